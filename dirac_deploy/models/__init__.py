"""Model definitions: the trainable DiracNet, the folded plain chain, and the ResNet baseline."""
