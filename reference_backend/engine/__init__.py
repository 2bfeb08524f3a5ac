"""Inference: the Gemma 3 model, generation loop, sampling, grammars, tool-call parsing, scheduler, embedder."""
