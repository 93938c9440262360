"""Judges for real faces: identity, lip sync, emotion, mouth landmarks."""
