"""Motion estimation: dense optical flow, used by the classic engine and by eval."""
