"""The pipeline's stages, in dataflow order: ingest → decontam → execute → narrate (template or model) → verify.

Each stage is a callable over a batch of work rows (a pyarrow Table); `base.RowStage` is their shared shape.
"""
