"""The feed list: the YAML file, OPML import/export, discovering a site's feeds."""
