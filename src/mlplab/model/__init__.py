"""The networks, their pre-training and what they cost: plain torch, no Lightning."""
