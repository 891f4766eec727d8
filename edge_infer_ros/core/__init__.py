"""ROS-free blocks all stages share: frame envelope and trace, payloads, handoff, params."""
