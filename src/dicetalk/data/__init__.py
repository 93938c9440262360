"""Training data in the MEAD-like and HDTF-like layouts (what ``dicetalk synth`` writes, or real clips arranged the same way).

- ``index``: find the clips of a dataset folder and their labels and splits;
- ``cache``: decode every clip of a split once into memory-mappable arrays (frames, speech,
  coefficients) so that CPU training never waits on video decoding;
- ``datasets``: seeded random clips of N frames with their audio, reference frame, emotion
  reference clip, expression coefficients and face mask; 1:1 mixing of emotion and talking data.
"""
