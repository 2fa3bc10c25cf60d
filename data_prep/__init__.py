"""Corpus -> manifest scripts; the trainer only reads what they write.

- ``ugr-prep-esc50`` / ``python -m data_prep.esc50``: ESC-50 (``audio/`` + ``meta/esc50.csv``);
- ``ugr-prep-speech`` / ``python -m data_prep.speech``: WSJ0, LibriSpeech or any speaker-folder
  corpus, the speaker as the class;
- ``ugr-prep-cache`` / ``python -m data_prep.cache``: a manifest's files resampled once to 8 kHz.

The manifest format is documented in ``ugr_experiments.data.manifest``.
"""
