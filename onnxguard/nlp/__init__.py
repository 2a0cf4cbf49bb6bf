"""Text classifiers: models that read strings or token ids, their data, attacks and checks.

* :mod:`.model`: ``TextModel``, queried with texts (or token ids in id space);
* :mod:`.data`: texts with optional labels from CSV, JSONL or .npz;
* :mod:`.attacks`: character edits (DeepWordBug-style), homoglyphs, zero-width
  insertion, word substitution, token substitution in id space;
* :mod:`.synonyms`: the synonym sources (shipped list, or the model's own embeddings);
* :mod:`.check`: one policy check run on a text model, as an ``EvasionCheck``.

Every query goes through :class:`onnxguard.oracle.Oracle` (texts are its inputs,
in an identity domain), so counting and budgets are the same as for images.
"""
