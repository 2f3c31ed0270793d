"""`make image-test`: the two images built and their programs run inside them.

`image_test` is the test, `engines` drives Docker or podman, `standin` builds the stand-in
base image where no Docker engine can pull the real one.
"""
