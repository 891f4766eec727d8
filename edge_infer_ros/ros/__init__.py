"""Everything that imports rclpy or a *_msgs package: conversions, container, nodes."""
