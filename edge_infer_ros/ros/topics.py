"""
The package's topic names, relative so that a namespace or a remap moves them all.

One place for what the nodes, the runner and the launch files agree on; the README's topic
table documents them.
"""

#: frames from the camera node (and their JPEG form on IMAGE_RAW + '/compressed')
IMAGE_RAW = 'image_raw'
#: the robot's own camera driver into the camera node (``source: topic``); remap it
IMAGE_IN = 'image_in'
#: preprocessed model input: edge_infer_ros_msgs/TensorFrame
TENSOR = 'tensor'
#: decoded detector output before NMS: edge_infer_ros_msgs/CandidateArray
CANDIDATES = 'candidates'
#: final detections in image pixels: edge_infer_ros_msgs/DetectionArray
DETECTIONS = 'detections'
#: the same as vision_msgs/Detection2DArray, when vision_msgs is installed
DETECTIONS_2D = 'detections_2d'
#: the command for the controller: geometry_msgs/TwistStamped, stamped with the capture time
CMD_VEL = 'cmd_vel'
#: each frame's whole trace, for the budget monitor: edge_infer_ros_msgs/FrameTrace
TRACE = 'trace'
#: one message per frame over the deadline: edge_infer_ros_msgs/DeadlineMiss
DEADLINE_MISS = 'deadline_miss'
#: frames with boxes and stage latencies drawn, only while someone subscribes
DEBUG_IMAGE = 'debug_image'
#: where every ROS node reports its health (absolute, as ROS tools expect)
DIAGNOSTICS = '/diagnostics'
#: the hops of a frame after the camera, in order (split runs check each one)
STAGE_HOPS = (TENSOR, CANDIDATES, DETECTIONS, TRACE)
