"""Knowledge distillation: a student fitted to a frozen teacher."""
