"""The download stage: an article page fetched politely (robots.txt, host slots) and handed to extraction."""
