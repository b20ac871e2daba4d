"""The poll stage: when each feed is due, downloading and parsing it, WebSub push subscriptions."""
