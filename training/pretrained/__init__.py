"""The pretrained-backbone model: its network, its fitted head, and the training run."""
