"""Pure building blocks: ids, names, chunking, crypto, blocks, manifests, tags. No I/O."""
