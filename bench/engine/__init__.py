"""The generative engine: tokenizer, T5 model, item trie, constrained and diverse beam search, training loop."""
