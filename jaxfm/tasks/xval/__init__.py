"""The xVal language model's training task, loss and answer scoring."""
