"""ROS-free logic of the budget monitor: sliding windows, budgets, verdicts, reports, profiles."""
