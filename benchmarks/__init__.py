"""``make bench``: our model server against the classic nginx + gunicorn + flask design."""
