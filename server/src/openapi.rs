//! The OpenAPI description of the HTTP API, served at `/api/openapi.json`.

use serde_json::{Value, json};

pub fn document() -> Value {
    let id_param = json!({"name": "documentId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A bs58check document id (the part after `automerge:`)."});
    let error = json!({"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "twinsync API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The merged records of the Smara International Club of Twinned Cities, for coordinators. Records sync over the automerge-repo protocol v1 at the WebSocket endpoint /sync."
        },
        "paths": {
            "/api/records": {"get": {
                "summary": "List records",
                "parameters": [
                    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["club", "city", "agreement", "project", "meeting", "person", "report"]}},
                    {"name": "city", "in": "query", "schema": {"type": "string"}, "description": "The city record's id or automerge: URL."},
                    {"name": "status", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "Records", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Listed"}}}}}}
            }},
            "/api/records/{documentId}": {"get": {
                "summary": "One record, merged, as typed JSON",
                "parameters": [id_param, {"name": "at", "in": "query", "schema": {"type": "string"}, "description": "Show the record as it stood at this time: seconds since the epoch, RFC 3339, or YYYY-MM-DD (end of that day, UTC)."}],
                "responses": {"200": {"description": "The record", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordView"}}}}, "400": error, "404": error, "422": error}
            }},
            "/api/records/{documentId}/conflicts": {"get": {
                "summary": "Fields holding concurrent values",
                "parameters": [id_param],
                "responses": {"200": {"description": "Conflicts", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Conflict"}}}}}, "404": error}
            }},
            "/api/records/{documentId}/history": {"get": {
                "summary": "The change log, with who delivered each change",
                "parameters": [id_param],
                "responses": {"200": {"description": "Changes, oldest first", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}}}}, "404": error}
            }},
            "/api/export/agreements.csv": {"get": {"summary": "Agreements as CSV", "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}}}},
            "/api/export/projects.csv": {"get": {"summary": "Projects and their milestones as CSV, one row per milestone", "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}}}},
            "/healthz": {"get": {"summary": "Liveness and database check", "responses": {"200": {"description": "ok"}, "503": error}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text format"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
            "Multilingual": {"type": "object", "properties": {"ar": {"type": "string"}, "fr": {"type": "string"}, "en": {"type": "string"}}},
            "Listed": {"type": "object", "required": ["id", "url", "kind", "title"], "properties": {
                "id": {"type": "string"}, "url": {"type": "string"}, "kind": {"type": "string", "nullable": true},
                "title": {"$ref": "#/components/schemas/Multilingual"}, "city": {"type": "string", "nullable": true},
                "status": {"type": "string", "nullable": true}, "valid": {"type": "boolean"}, "updated_at": {"type": "integer"}}},
            "RecordView": {"type": "object", "properties": {
                "id": {"type": "string"}, "url": {"type": "string"}, "heads": {"type": "array", "items": {"type": "string"}},
                "record": {"type": "object", "description": "The record's fields plus `kind`."}, "conflicts": {"type": "integer"}}},
            "Conflict": {"type": "object", "properties": {
                "path": {"type": "string"},
                "values": {"type": "array", "items": {"type": "object", "properties": {"value": {}, "actor": {"type": "string"}}}}}},
            "Change": {"type": "object", "properties": {
                "hash": {"type": "string"}, "actor": {"type": "string"}, "seq": {"type": "integer"}, "time": {"type": "integer"},
                "message": {"type": "string", "nullable": true}, "fields": {"type": "array", "items": {"type": "string"}},
                "delivered_by": {"type": "object", "nullable": true, "properties": {"peer_id": {"type": "string"}, "device": {"type": "string", "nullable": true}, "received_at": {"type": "integer"}}}}}
        }}
    })
}
