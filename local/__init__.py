"""Local stand-ins for the AWS side, to run the real programs on one machine."""
