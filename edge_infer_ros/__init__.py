"""Edge inference pipeline for ROS 2."""
