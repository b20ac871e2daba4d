"""Identity and the same story: which entries were seen, which article a worker holds, which story an
article repeats. Pure fingerprints (``fingerprint``) apart from the Redis structures that remember them."""
