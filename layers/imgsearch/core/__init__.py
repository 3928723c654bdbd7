"""The foundation every other package builds on: configuration, keys and ids, AWS client
settings, the error root, timestamps and how vectors are prepared for an index."""
