"""The training program of the training image: SageMaker's ``train`` command.

It reads the channels and configuration SageMaker mounts under ``$ML_ROOT``,
trains a classifier of the image's model family and leaves it in ``$ML_ROOT/model``; every
failure leaves a reason in ``$ML_ROOT/output/failure``, the place SageMaker
reads a job's ``FailureReason`` from.
"""
