"""Code shared by the training and inference images.

Both images install this one package, so what a training job writes into
``/opt/ml/model`` is read back by exactly the same code in the server.
"""
