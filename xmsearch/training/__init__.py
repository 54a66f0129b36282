"""Improving the model on the user's data: `xmsearch train` fine-tunes the shared weights and the
projection on triples in one language (`finetune`), with the adapters and the embeddings frozen;
`xmsearch adapter add` trains a new language's adapter with masked-language modelling, everything
else frozen (`adapter`). Both write checkpoints in the reference's format (`model`)."""
