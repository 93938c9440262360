"""The authors' released checkpoints: safe readers for their files and conversion to this project's layout.

* :mod:`.priors` / :mod:`.safe_pickle`: emotion prior files (``.npy`` incl. the release's pickled dicts,
  ``.safetensors``, ``.json``), read without unpickling arbitrary objects;
* :mod:`.official`: ``dicetalk convert-official``, the four ``.pth`` files (+ SVD-xt, whisper-tiny,
  priors, the RIFE frame interpolator) checked name by name and written as a dicetalk weights folder,
  in three steps: :mod:`.release_reader` (find and safely read), :mod:`.plan` (check everything,
  :class:`~dicetalk.convert.plan.ConversionPlan`) and :mod:`.writer` (stream it into safetensors);
* :mod:`.rife`: the release's ``RIFE/flownet.pkl`` -> ``frame_interpolator/``;
* :mod:`.download`: ``dicetalk download``, the release's files from the hub.
"""
