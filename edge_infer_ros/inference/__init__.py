"""ROS-free logic of the detector stage: model checks, YOLO decoding, backends."""
