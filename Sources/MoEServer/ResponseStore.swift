import Foundation
import GRDB

/// Responses kept for OpenAI's `store` (on unless a request sets it false), in the server's SQLite file beside the
/// jobs: each as the response object the client received and the items it continued (the conversation so far
/// without instructions, each item with an id). A later request's `previous_response_id` goes on from those items
/// and the response's output, so one row holds everything a continuation needs: deleting an earlier response of a
/// chain does not break the later ones. Committed before the response is returned (or its last event sent). Kept
/// `retentionDays` (OpenAI keeps them 30 days; 0: for ever): older ones are deleted as new ones are stored.
final class ResponseStore: Sendable {
    let db: DatabaseQueue
    let retentionDays: Int

    /// A stored response: the object as returned, and the conversation items it continued.
    struct Stored {
        var response: [String: Any]
        var input: [[String: Any]]
        /// What a continuation of this response starts from: its input items, then its output items.
        var conversation: [[String: Any]] { input + (response["output"] as? [[String: Any]] ?? []) }
    }

    init(db: DatabaseQueue, retentionDays: Int = 30) throws {
        self.db = db
        self.retentionDays = retentionDays
        var m = DatabaseMigrator()
        m.registerMigration("responses-v1") { db in
            // body: the response object (JSON); input: the items it continued (JSON list); created: Unix seconds.
            try db.execute(sql: """
                CREATE TABLE response (id TEXT PRIMARY KEY, created INTEGER NOT NULL, body TEXT NOT NULL, input TEXT NOT NULL);
                CREATE INDEX response_created ON response(created);
                """)
        }
        try m.migrate(db)
        // Background responses a stopped server left unfinished will not finish: they are failed, not queued forever.
        try mark(where: "json_extract(body, '$.status') IN ('queued', 'in_progress')", [], status: "failed",
                 error: "the server stopped before this background response finished")
    }

    /// Sets the status (and error) of the stored responses `filter` selects, in place.
    private func mark(where filter: String, _ arguments: StatementArguments, status: String, error: String?) throws {
        let e = error.map { wireJSON(object: ["code": "server_error", "message": $0]) } ?? "null"
        try db.write { db in
            try db.execute(sql: "UPDATE response SET body = json_set(body, '$.status', ?, '$.error', json(?)) WHERE \(filter)",
                           arguments: [status, e] + arguments)
        }
    }

    /// Sets one response's status (and error); the response as it now stands, nil when there is none.
    func setStatus(_ id: String, _ status: String, error: String? = nil) throws -> [String: Any]? {
        try mark(where: "id = ?", [id], status: status, error: error)
        return try get(id)?.response
    }

    func save(_ response: [String: Any], input: [[String: Any]]) throws {
        guard let id = response["id"] as? String else { return }
        let created = response["created_at"] as? Int ?? Int(Date().timeIntervalSince1970)
        let items = String(decoding: try JSONSerialization.data(withJSONObject: input, options: [.sortedKeys]), as: UTF8.self)
        let now = Int(Date().timeIntervalSince1970)
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO response (id, created, body, input) VALUES (?, ?, ?, ?)",
                           arguments: [id, created, wireJSON(object: response), items])
            if retentionDays > 0 {
                try db.execute(sql: "DELETE FROM response WHERE created < ?", arguments: [now - retentionDays * 86_400])
            }
        }
    }

    func get(_ id: String) throws -> Stored? {
        guard let row = try db.read({ db in try Row.fetchOne(db, sql: "SELECT body, input FROM response WHERE id = ?", arguments: [id]) })
        else { return nil }
        let body: String = row["body"], input: String = row["input"]
        guard let response = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let items = try JSONSerialization.jsonObject(with: Data(input.utf8)) as? [[String: Any]] else { return nil }
        return Stored(response: response, input: items)
    }

    /// Whether there was such a response.
    func delete(_ id: String) throws -> Bool {
        try db.write { db in
            try db.execute(sql: "DELETE FROM response WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }
}

/// Background responses (`background: true`) still running: their tasks, so that a cancel stops one, under the lock
/// that also covers storing a finished or cancelled one, so neither overwrites the other.
final class BackgroundResponses: @unchecked Sendable {
    private let lock = NSLock()
    private var tasks: [String: Task<Void, Never>] = [:]

    /// Runs `work` (the generation, read to its end) and stores its response unless it was cancelled first.
    func run(_ id: String, store: ResponseStore, items: [[String: Any]], _ work: @escaping @Sendable () async -> [String: Any]) {
        let handed = Handed(items)
        lock.withLock {
            tasks[id] = Task {
                let response = await work()
                self.lock.withLock {
                    guard self.tasks.removeValue(forKey: id) != nil else { return }
                    do { try store.save(response, input: handed.value) } catch {
                        _ = try? store.setStatus(id, "failed", error: "the response could not be stored: \(error)")
                    }
                }
            }
        }
    }

    /// Cancels a running response and stores it as cancelled; nil when none runs under that id (finished, or not
    /// a background response).
    func cancel(_ id: String, store: ResponseStore) throws -> [String: Any]? {
        try lock.withLock {
            guard let task = tasks.removeValue(forKey: id) else { return nil }
            task.cancel()
            return try store.setStatus(id, "cancelled")
        }
    }

    /// Stops every running one (server shutdown): they stay as stored, and the next start fails them.
    func cancelAll() {
        lock.withLock {
            for t in tasks.values { t.cancel() }
            tasks = [:]
        }
    }
}

/// A value (JSON built with Any) handed from a request to the task that finishes it: only read after the hand-over.
struct Handed<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
