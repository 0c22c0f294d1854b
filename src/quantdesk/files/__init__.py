"""Files: uploads in a local folder or S3, user data sets (`user:<name>`) and strategy files."""
