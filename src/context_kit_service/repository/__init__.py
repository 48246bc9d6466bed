"""The context-repository model: entity types, YAML files, ids, relations and validation."""

from context_kit_service.repository.model import Entity, Repository, load_repository
from context_kit_service.repository.types import ENTITY_TYPES, EntityType, entity_type

__all__ = ["ENTITY_TYPES", "Entity", "EntityType", "Repository", "entity_type", "load_repository"]
