//! The OpenAPI description of the HTTP API, served at `/api/openapi.json`.
//!
//! Each group of paths is its own `json!` call: the macro recurses at
//! every entry of an object, and one literal for the whole API would come
//! close to the compiler's recursion limit.

use serde_json::{Map, Value, json};

pub fn document() -> Value {
    let mut paths = Map::new();
    for group in [
        record_paths(),
        device_paths(),
        quarantine_paths(),
        public_paths(),
    ] {
        if let Value::Object(group) = group {
            paths.extend(group);
        }
    }
    // Every write may find the server's storage full.
    for operations in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in operations.iter_mut() {
            if !["post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses
                    .entry("507")
                    .or_insert_with(|| json!({"$ref": "#/components/responses/StorageFull"}));
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "twinsync API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The merged records of the Smara International Club of Twinned Cities, and the devices allowed to read and write them. Records sync over the automerge-repo protocol v1 at the WebSocket endpoint /sync. Every endpoint but /api/openapi.json, /api/invites/redeem, /healthz and /metrics needs a device token (`<device id>.<secret>`): any device that is not revoked reads the records, and only coordinators manage invites, devices and the quarantine."
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": components()
    })
}

/// An answer with the `Error` body.
fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// An answer axum gives before the handler runs, as plain text.
fn plain(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

/// A JSON answer with the schema `name`.
fn body(description: &str, name: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}})
}

/// A JSON answer holding an array of the schema `name`.
fn list_of(description: &str, name: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}}}}})
}

/// Adds to `responses` what the token check answers for any device:
/// 401, 429 and 503.
fn signed_in(mut responses: Value) -> Value {
    if let Some(map) = responses.as_object_mut() {
        for (status, name) in [
            ("401", "Unauthorized"),
            ("429", "TooManyRequests"),
            ("503", "Unavailable"),
        ] {
            map.entry(status)
                .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
        }
    }
    responses
}

/// Adds to `responses` what the token and role checks answer: 401, 403,
/// 429 and 503.
fn with_role(responses: Value) -> Value {
    let mut responses = signed_in(responses);
    if let Some(map) = responses.as_object_mut() {
        map.entry("403")
            .or_insert_with(|| json!({"$ref": "#/components/responses/Forbidden"}));
    }
    responses
}

/// The records, for every device that is not revoked.
fn record_paths() -> Value {
    let id_param = json!({"name": "documentId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A bs58check document id (the part after `automerge:`)."});
    let failed = error("An error");
    json!({
        "/api/records": {"get": {
            "summary": "List records",
            "parameters": [
                {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["club", "city", "agreement", "project", "meeting", "person", "report"]}},
                {"name": "city", "in": "query", "schema": {"type": "string"}, "description": "The city record's id or automerge: URL: the records of that city (`city`, or a project's `owner_city`), and the agreements that name it among their parties."},
                {"name": "status", "in": "query", "schema": {"type": "string"}}
            ],
            "responses": with_role(json!({"200": list_of("Records", "Listed")}))
        }},
        "/api/records/{documentId}": {"get": {
            "summary": "One record, merged, as typed JSON",
            "parameters": [id_param, {"name": "at", "in": "query", "schema": {"type": "string"}, "description": "Show the record as it stood at this time: seconds since the epoch, RFC 3339, or YYYY-MM-DD (end of that day, UTC)."}],
            "responses": with_role(json!({"200": body("The record", "RecordView"), "400": failed, "404": failed, "422": failed}))
        }},
        "/api/records/{documentId}/conflicts": {"get": {
            "summary": "Fields holding concurrent values",
            "parameters": [id_param],
            "responses": with_role(json!({"200": list_of("Conflicts", "Conflict"), "404": failed}))
        }},
        "/api/records/{documentId}/history": {"get": {
            "summary": "The change log, with who delivered each change",
            "parameters": [id_param],
            "responses": with_role(json!({"200": list_of("Changes, oldest first", "Change"), "404": failed}))
        }},
        "/api/changes": {"get": {
            "summary": "The last changes stored in any record, newest first, with the device that delivered each",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                {"name": "per", "in": "query", "schema": {"type": "string", "enum": ["writer"]}, "description": "`writer`: only the newest change of each record by each device, among the last 20,000 stored, so that one long typing session leaves room for the other records that arrived with it."}
            ],
            "responses": with_role(json!({"200": {"description": "Changes: hash, record, kind, title, device, device_name, device_role, received_at", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
        }},
        "/api/export/agreements.csv": {"get": {"summary": "Agreements as CSV", "responses": with_role(json!({"200": {"description": "CSV; a record that cannot be read is left out and named", "headers": {"x-twinsync-unreadable": {"description": "The URLs of the records left out as they cannot be read, separated by spaces", "schema": {"type": "string"}}}, "content": {"text/csv": {}}}}))}},
        "/api/export/projects.csv": {"get": {"summary": "Projects and their milestones as CSV, one row per milestone", "responses": with_role(json!({"200": {"description": "CSV; a record that cannot be read is left out and named", "headers": {"x-twinsync-unreadable": {"description": "The URLs of the records left out as they cannot be read, separated by spaces", "schema": {"type": "string"}}}, "content": {"text/csv": {}}}}))}}
    })
}

/// The calling device, invites and devices.
fn device_paths() -> Value {
    let device_param = json!({"name": "deviceId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A device id: the part of its token before the dot."});
    json!({
        "/api/me": {"get": {
            "summary": "The calling device",
            "description": "Answers for a revoked device too (with `revoked_at` set), so a client can tell it was revoked.",
            "responses": signed_in(json!({"200": body("The device", "Device")}))
        }},
        "/api/invites": {"get": {
            "summary": "The invites nobody has used yet, never with their codes (coordinators)",
            "description": "Those that can still be redeemed: not used, not withdrawn, not expired. `created_by` is the device that made one; null for the server's first invite and the operator's (`twinsync device invite`).",
            "responses": with_role(json!({"200": list_of("Invites, newest first", "PendingInvite")}))
        }, "post": {
            "summary": "Create a one-time invite (coordinators)",
            "description": "The answer holds the invite's code and a link that opens the app and redeems it in one click. The code is shown only now; the server keeps its hash.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InviteRequest"}}}},
            "responses": with_role(json!({
                "201": body("The invite", "Invite"),
                "400": error("The device is not acceptable: its name is empty or over 200 characters, a city is unknown or ambiguous, or a delegate names no city. Also a body that is not valid JSON."),
                "415": error("The body is not declared as `application/json`."),
                "422": error("The body is JSON but not an invite request, such as an unknown role.")
            }))
        }},
        "/api/invites/redeem": {"post": {
            "summary": "Redeem an invite for a device token",
            "description": "Needs no token. Each invite is redeemed once. A code that is no invite counts against the caller's address; an invite's code, used, withdrawn or lapsed, does not.",
            "security": [],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RedeemRequest"}}}},
            "responses": {
                "201": body("The new device and its token, shown only now", "Redeemed"),
                "400": error("The body is not `{\"code\": …, \"name\": …}`."),
                "401": error("The invite is not valid."),
                "410": error("The invite was already used, a coordinator withdrew it, or it expired."),
                "413": error("The body is over 64 KiB."),
                "429": error("Too many codes that are no invite from this address in a minute; the message says how many seconds to wait."),
                "503": {"$ref": "#/components/responses/Unavailable"}
            }
        }},
        "/api/invites/{inviteId}/cancel": {"post": {
            "summary": "Withdraw an invite nobody has used (coordinators)",
            "description": "Its link then signs no one in, and whoever opens it is told a coordinator withdrew it.",
            "parameters": [{"name": "inviteId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The invite's `id`, as listed."}],
            "responses": with_role(json!({
                "200": {"description": "Withdrawn", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "withdrawn_at"], "properties": {"id": {"type": "string"}, "withdrawn_at": {"type": "integer"}}}}}},
                "404": error("No invite with this id is waiting to be used: it was used, withdrawn or has expired.")
            }))
        }},
        "/api/devices": {"get": {
            "summary": "Every device, revoked ones included, never with a token (coordinators)",
            "responses": with_role(json!({"200": list_of("Devices, oldest first", "Device")}))
        }},
        "/api/devices/{deviceId}": {"patch": {
            "summary": "Change a device's name, role, cities or person (coordinators)",
            "description": "Checked as an invite is. When the role, cities (as a set) or person change, the device's sockets signed in under the old ones are closed at once, and its client signs in again under the new ones; its token stays the same. A device that stops being a coordinator loses the unused invites it made.",
            "parameters": [device_param.clone()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeviceUpdate"}}}},
            "responses": with_role(json!({
                "200": body("The changed device", "ChangedDevice"),
                "400": error("The device would not be acceptable: its name is empty or over 200 characters, a city is unknown or ambiguous, or a delegate names no city. Also a body that is not valid JSON."),
                "404": error("No device has this id."),
                "409": error("The device is revoked, or it is the last coordinator whose token still works and would stop being one, or it kept changing while this request was applied (try again)."),
                "415": error("The body is not declared as `application/json`."),
                "422": error("The body is JSON but not a device update, such as an unknown role or field.")
            }))
        }},
        "/api/devices/{deviceId}/revoke": {"post": {
            "summary": "Revoke a device (coordinators)",
            "description": "Closes the device's open sockets at once, and ends the unused invites it made. Its token still signs in, but only to GET /api/me and to /sync in hand-in mode: the socket shows it nothing, and what it sends goes to the quarantine. Revoking a device again keeps its first `revoked_at`.",
            "parameters": [device_param],
            "responses": with_role(json!({
                "200": body("The revoked device", "RevokedDevice"),
                "404": error("No device has this id."),
                "409": error("The device is the last coordinator whose token still works: it cannot revoke itself (`twinsync device revoke` on the server's machine can).")
            }))
        }}
    })
}

/// Refused changes, for coordinators.
fn quarantine_paths() -> Value {
    let batch_param = json!({"name": "batchId", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}, "description": "The quarantined batch's `id`."});
    json!({
        "/api/quarantine": {"get": {
            "summary": "Refused batches of changes (coordinators)",
            "description": "A batch is what one `sync` or `request` message brought that the permissions or the schema refused, or what a revoked device handed in. It was neither stored in its record nor relayed.",
            "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "accepted", "discarded"]}, "description": "Only batches with this status; all if absent."}],
            "responses": with_role(json!({
                "200": list_of("Batches, pending first, then newest first", "Quarantined"),
                "400": error("`status` is not one of the three.")
            }))
        }},
        "/api/quarantine/{batchId}": {"get": {
            "summary": "One batch, with what it would change (coordinators)",
            "description": "The batch as listed, and `changes`: each field it would change in its record as stored now, with the value before and after and, for text, the words added and removed. When that cannot be shown, `not_shown` says why instead: the changes do not load, build on changes still waiting for review in other batches (`builds_on`) or otherwise lacking on the server, add nothing to the record as it is now, or nest values deeper than the server reads; or the record is damaged on the server (`record-damaged`: an operator can salvage it).",
            "parameters": [batch_param],
            "responses": with_role(json!({
                "200": body("The batch", "QuarantinedPreview"),
                "400": error("The batch id is not an integer."),
                "404": error("No batch has this id.")
            }))
        }},
        "/api/quarantine/{batchId}/accept": {"post": {
            "summary": "Apply a pending batch to its record (coordinators)",
            "description": "The changes are applied as delivered by the device that sent them, without the permission check; they must still leave the record valid. Then they are stored and relayed like any change.",
            "parameters": [batch_param],
            "responses": with_role(json!({
                "200": body("Accepted", "Decision"),
                "400": error("The batch id is not an integer."),
                "404": error("No batch has this id."),
                "409": error("The batch was already accepted or discarded (`batch-decided`), or it cannot be applied: it builds on batches still pending, named in the message (`batch-builds-on-pending`), or on changes no pending batch holds, most likely not yet sent by the device (`batch-missing-deps`), or it would leave the record invalid or past its limits, or the record cannot be read on the server (`batch-not-applicable`)."),
                "500": error("The batch or its record is stored but cannot be read."),
                "503": error("The server could not store the changes (its storage failing, `database-unavailable`); the batch stays pending, to accept again."),
                "507": error("The server's storage is full (`storage-full`): the disk, or the database at `--max-db-mib`; the batch stays pending, to accept again once its operator made room.")
            }))
        }},
        "/api/quarantine/{batchId}/discard": {"post": {
            "summary": "Discard a pending batch (coordinators)",
            "description": "The batch stays listed, with status `discarded`.",
            "parameters": [batch_param],
            "responses": with_role(json!({
                "200": body("Discarded", "Decision"),
                "400": error("The batch id is not an integer."),
                "404": error("No batch has this id."),
                "409": error("The batch was already accepted or discarded.")
            }))
        }}
    })
}

/// The sync endpoint, and what needs no token.
fn public_paths() -> Value {
    json!({
        "/sync": {"get": {
            "summary": "The WebSocket sync endpoint (automerge-repo protocol v1)",
            "description": "The token is checked before the upgrade: without a valid one no socket opens. Browsers cannot set headers on a WebSocket: the token comes as a subprotocol offered beside `twinsync` (`Sec-WebSocket-Protocol: twinsync, twinsync-token.TOKEN`; the server selects `twinsync`), or as the query parameter `token` (`ws://HOST/sync?token=TOKEN`), which the official automerge-repo clients use and which proxies log. The socket carries binary CBOR frames. A revoked device's socket runs in hand-in mode: it is shown no record, and the changes it sends are quarantined.",
            "security": [{"bearerAuth": []}, {"tokenQuery": []}],
            "responses": signed_in(json!({
                "101": {"description": "Switching protocols: the socket is open; the client sends `join`."},
                "400": plain("Not a WebSocket upgrade.")
            }))
        }},
        "/api/openapi.json": {"get": {
            "summary": "This description",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {}}}}
        }},
        "/healthz": {"get": {
            "summary": "Liveness and database check",
            "security": [],
            "responses": {"200": {"description": "ok"}, "503": error("An error")}
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "security": [],
            "responses": {"200": {"description": "Prometheus text format"}}
        }}
    })
}

fn components() -> Value {
    json!({
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A device token, `<device id>.<secret>`, from `twinsync device add` or a redeemed invite. It stays valid while the device is seen at least once per token lifetime (`--token-ttl-days`, 90 by default)."},
            "tokenQuery": {"type": "apiKey", "in": "query", "name": "token", "description": "The same token as a query parameter, for WebSockets. Read on /sync alone, and there only when no `Authorization` header or token subprotocol comes: a URL ends up in more logs than a header."}
        },
        "responses": {
            "Unauthorized": {
                "description": "The token is missing, not valid, or expired.",
                "headers": {"WWW-Authenticate": {"description": "`Bearer realm=\"twinsync\"`", "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            },
            "Forbidden": {
                "description": "The device was revoked (it may only hand in changes over /sync), or the endpoint is for coordinators.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            },
            "TooManyRequests": {
                "description": "This address sent too many wrong or expired tokens in its current minute; until that minute ends, every request that needs a token is refused, whatever token it carries (with `Retry-After`). On a request that reads a record whole (a record, its history or disagreements, an export, a refused batch's preview), also: this device already has 8 such requests waiting or under way (code `too-many-reads`, no `Retry-After`); ask again once they are answered.",
                "headers": {"Retry-After": {"description": "Seconds until the minute ends; only for tokens refused.", "schema": {"type": "integer", "minimum": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            },
            "Unavailable": {
                "description": "The server cannot check tokens or read the database right now; try again shortly.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            },
            "StorageFull": {
                "description": "The server's storage is full (code `storage-full`): its disk, or the database at `--max-db-mib`. Nothing was written; trying again helps only once its operator has made room.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }
        },
        "schemas": schemas()
    })
}

fn schemas() -> Value {
    let mut schemas = Map::new();
    for group in [record_schemas(), device_schemas()] {
        if let Value::Object(group) = group {
            schemas.extend(group);
        }
    }
    Value::Object(schemas)
}

fn record_schemas() -> Value {
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "string", "description": "What went wrong, in English."}, "code": {"type": "string", "enum": crate::api::CODES, "description": "For the failures the app says in the person's language, a stable code."}}, "required": ["error"]},
        "Multilingual": {"type": "object", "properties": {"ar": {"type": "string"}, "fr": {"type": "string"}, "en": {"type": "string"}}},
        "Listed": {"type": "object", "required": ["id", "url", "kind", "title"], "properties": {
            "id": {"type": "string"}, "url": {"type": "string"}, "kind": {"type": "string", "nullable": true},
            "title": {"$ref": "#/components/schemas/Multilingual"}, "city": {"type": "string", "nullable": true},
            "status": {"type": "string", "nullable": true}, "date": {"type": "string", "nullable": true, "description": "A meeting's or a report's date, YYYY-MM-DD."}, "valid": {"type": "boolean"}, "updated_at": {"type": "integer"}}},
        "RecordView": {"type": "object", "properties": {
            "id": {"type": "string"}, "url": {"type": "string"}, "heads": {"type": "array", "items": {"type": "string"}},
            "record": {"type": "object", "description": "The record's fields plus `kind`."}, "conflicts": {"type": "integer"},
            "created_by": {"type": "string", "nullable": true, "description": "The id of the device that created the record (delivered its first changes); null for the server's own (the demo club). Meetings and reports are also their creator's to write."}}},
        "Conflict": {"type": "object", "properties": {
            "path": {"type": "string"},
            "values": {"type": "array", "items": {"type": "object", "properties": {"value": {}, "actor": {"type": "string"}}}}}},
        "Change": {"type": "object", "properties": {
            "hash": {"type": "string"}, "actor": {"type": "string"}, "seq": {"type": "integer"}, "time": {"type": "integer"},
            "message": {"type": "string", "nullable": true}, "fields": {"type": "array", "items": {"type": "string"}},
            "delivered_by": {"type": "object", "nullable": true, "properties": {
                "peer_id": {"type": "string"},
                "device": {"type": "string", "nullable": true, "description": "The id of the device whose socket delivered the change; null for changes the server made (the demo club, schema migrations) or received before devices existed."},
                "device_name": {"type": "string", "nullable": true, "description": "That device's name, as it is now; null where `device` is."},
                "received_at": {"type": "integer"}}}}}
    })
}

fn device_schemas() -> Value {
    let role = json!({"type": "string", "enum": ["coordinator", "delegate", "observer"]});
    let cities = json!({"type": "array", "items": {"type": "string"}, "description": "Document ids of the member cities a delegate belongs to."});
    let person = json!({"type": "string", "nullable": true, "description": "The document id of the holder's person record: meetings they attend and reports they wrote are theirs to edit."});
    json!({
        "Device": {"type": "object", "required": ["id", "name", "role", "cities", "person", "created_at", "last_seen_at", "expires_at", "revoked_at", "changed_at"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "role": role, "cities": cities, "person": person,
            "created_at": {"type": "integer", "description": "Seconds since the epoch, as every time here."},
            "last_seen_at": {"type": "integer"},
            "expires_at": {"type": "integer", "description": "When the token stops working unless the device is seen again."},
            "revoked_at": {"type": "integer", "nullable": true},
            "changed_at": {"type": "integer", "nullable": true, "description": "When the role, cities or person last changed."}}},
        "ChangedDevice": {"allOf": [{"$ref": "#/components/schemas/Device"}, {"type": "object", "required": ["sockets_closed"], "properties": {
            "sockets_closed": {"type": "integer", "description": "Sockets signed in under the device's old rights that this server closed; the client reconnects under the new ones."}}}]},
        "DeviceUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "description": "1 to 200 characters."},
            "role": role,
            "cities": {"type": "array", "items": {"type": "string"}, "description": "Replaces the member cities, each by record id or by its name in any language; a delegate needs at least one."},
            "person": {"type": "string", "nullable": true, "description": "The holder's person record id; `null` takes it away."}},
            "description": "What to change; a field left out stays as it is."},
        "RevokedDevice": {"allOf": [{"$ref": "#/components/schemas/Device"}, {"type": "object", "required": ["sockets_closed"], "properties": {
            "sockets_closed": {"type": "integer", "description": "Sockets of the device this server closed."}}}]},
        "InviteRequest": {"type": "object", "required": ["name", "role"], "properties": {
            "name": {"type": "string", "description": "Who will hold the device, 1 to 200 characters."},
            "role": role,
            "cities": {"type": "array", "items": {"type": "string"}, "description": "Member cities, each by record id or by its name in any language; a delegate needs at least one."},
            "person": person,
            "valid_hours": {"type": "integer", "minimum": 1, "maximum": 2160, "description": "Hours the invite can be redeemed (clamped to 1 to 2160); the server's --invite-hours if absent."}}},
        "Invite": {"type": "object", "required": ["id", "code", "link", "name", "role", "cities", "person", "expires_at"], "properties": {
            "id": {"type": "string"},
            "code": {"type": "string", "description": "What the new device redeems, shown only now."},
            "link": {"type": "string", "description": "The app's address with `#invite=<code>`: --public-url if set, else the host the request came to."},
            "name": {"type": "string"}, "role": role, "cities": cities, "person": person,
            "expires_at": {"type": "integer"}}},
        "PendingInvite": {"type": "object", "required": ["id", "name", "role", "cities", "person", "created_by", "created_at", "expires_at"], "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"}, "role": role, "cities": cities, "person": person,
            "created_by": {"type": "string", "nullable": true, "description": "The device that made it; null for the server's first invite and the operator's."},
            "created_at": {"type": "integer"},
            "expires_at": {"type": "integer"}}},
        "RedeemRequest": {"type": "object", "required": ["code"], "properties": {
            "code": {"type": "string"},
            "name": {"type": "string", "description": "A name for the device; the invite's name if absent or blank."}}},
        "Redeemed": {"type": "object", "required": ["token", "device"], "properties": {
            "token": {"type": "string", "description": "The device token, shown only now."},
            "device": {"$ref": "#/components/schemas/Device"}}},
        "Quarantined": {"type": "object", "required": ["id", "doc_id", "device_id", "peer_id", "hashes", "reason", "received_at", "status"], "properties": {
            "id": {"type": "integer", "format": "int64"},
            "doc_id": {"type": "string"},
            "device_id": {"type": "string"},
            "device_name": {"type": "string", "nullable": true, "description": "The device's name, which the person redeeming its invite may have chosen."},
            "device_role": {"type": "string", "nullable": true, "description": "The device's role now (`coordinator`, `delegate` or `observer`), which a coordinator gave it; null for a device the server does not know."},
            "peer_id": {"type": "string"},
            "hashes": {"type": "array", "items": {"type": "string"}, "description": "The changes of the batch the record did not have."},
            "path": {"type": "string", "nullable": true, "description": "The first field at fault; null for what a revoked device handed in."},
            "reason": {"type": "string", "description": "Why, in English."},
            "code": {"type": "string", "nullable": true, "description": "Why, as a code an app translates: invalid, too-deep, revoked, observer, kind-changed, unknown-kind, adopted, ended, not-yours, invalid-before, club-created, club-beyond-index, club-index-removed, club-index-changed, club-index-relisted or listed-by-another; null for batches kept before the server recorded codes."},
            "received_at": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "accepted", "discarded"]},
            "decided_by": {"type": "string", "nullable": true, "description": "The id of the coordinator's device that decided; for a batch settled because all its changes were stored later anyway (its device, once allowed, sent them again), the device that delivered the change completing it (null if the server made it)."},
            "decided_at": {"type": "integer", "nullable": true},
            "builds_on": {"type": "array", "items": {"type": "integer"}, "description": "For a pending batch, the other pending batches of its record holding changes it builds on, which the record lacks, directly or through one another, by id: it can be accepted only after them, starting with those of them that build on no other pending batch."}}},
        "QuarantinedPreview": {"allOf": [{"$ref": "#/components/schemas/Quarantined"}, {"type": "object", "properties": {
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/FieldChange"}},
            "kind": {"type": "string", "nullable": true, "description": "The record's kind with the batch applied, beside `changes`: a refused new record is not stored, and is known by this alone."},
            "title": {"description": "The record's title with the batch applied (a map of languages; for a city, a person or the club, its name), beside `changes`; null if none."},
            "not_shown": {"type": "string", "description": "Why `changes` is absent."},
            "not_shown_code": {"type": "string", "enum": crate::review::PreviewError::CODES, "description": "The same, as a stable code."}}}]},
        "FieldChange": {"type": "object", "required": ["path", "before", "after"], "properties": {
            "path": {"type": "string", "description": "The record path, such as `/status` or `/milestones/<id>/due`; a set, or a list whose items have no id, is given whole (`/attendees`)."},
            "before": {"description": "The value in the record as stored now; null if none."},
            "after": {"description": "The value with the batch; null if none."},
            "text": {"type": "array", "description": "For two different strings before and after: the passages in order, each `same`, `added` or `removed`; unchanged passages are cut to 60 characters at each end that meets a change, a cut marked `…`.", "items": {"type": "object", "required": ["kind", "text"], "properties": {
                "kind": {"type": "string", "enum": ["same", "added", "removed"]},
                "text": {"type": "string"}}}}}},
        "Decision": {"type": "object", "required": ["id", "status"], "properties": {
            "id": {"type": "integer", "format": "int64"},
            "status": {"type": "string", "enum": ["accepted", "discarded"]},
            "changes_applied": {"type": "integer", "description": "On accept: the changes the record did not have yet."}}}
    })
}
