"""ROS-free logic per stage, named like the nodes: camera, preprocess, nms, action."""
