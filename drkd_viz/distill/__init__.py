"""Distillation: the objective interface, DRKD's relation losses, comparison methods, the distiller."""
