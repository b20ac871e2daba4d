"""The extract stage: main text and metadata of a page (trafilatura), with a faster byline search."""
