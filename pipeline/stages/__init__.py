"""Stages: document stages map a batch to a batch; global stages map a Dataset to a Dataset."""
