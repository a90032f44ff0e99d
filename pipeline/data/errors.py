class DatasetError(ValueError):
    """A dataset folder or file that does not match the expected layout; the message names the path."""
