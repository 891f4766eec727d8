"""Thin rclpy nodes around the plain pipeline modules."""
