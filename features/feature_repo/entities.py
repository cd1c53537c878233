"""The keys features hang off: a user, an item, and an item category (paired with a user)."""

from __future__ import annotations

from feast import Entity, ValueType

from ranklab import schema

user = Entity(
    name="user",
    join_keys=[schema.USER_ID],
    value_type=ValueType.INT64,
    description="A marketplace user (the person searching).",
)

item = Entity(
    name="item",
    join_keys=[schema.ITEM_ID],
    value_type=ValueType.INT64,
    description="A listed item (a ranking candidate).",
)

# Only ever used together with `user`: user_category_affinity is keyed by (user_id,
# item_category), where item_category is the candidate item's category.
item_category = Entity(
    name="item_category",
    join_keys=[schema.ITEM_CATEGORY],
    value_type=ValueType.STRING,
    description="The category of a candidate item.",
)

ENTITIES = [user, item, item_category]
