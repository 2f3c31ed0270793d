"""One module per deployment unit (stack), plus the typed config that `app.py` reads."""
