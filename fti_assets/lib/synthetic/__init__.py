"""The synthetic world: the seeded generator and its release into landing/."""
