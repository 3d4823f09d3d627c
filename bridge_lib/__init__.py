# Every service imports bridge_lib before aiogram; installing here keeps aiogram's ~1,000 pydantic
# schemas from being built at import (about 105 MB per process), see bridge_lib/aiogram_schemas.py.
from bridge_lib import aiogram_schemas

aiogram_schemas.install()
