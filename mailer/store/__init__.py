"""The subscriber store: the only package that imports SQLAlchemy or Alembic."""
