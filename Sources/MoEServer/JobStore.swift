import Foundation
import GRDB

/// A batch job as the API shows it.
struct JobView: Encodable, Sendable {
    var id: String
    var object = "job"
    var status: String
    var total: Int
    var completed: Int
    var failed: Int
    var created: Int
    var finishedAt: Int?
    enum CodingKeys: String, CodingKey { case id, object, status, total, completed, failed, created, finishedAt = "finished_at" }

    /// `finished_at` is sent as null while the job runs.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(object, forKey: .object); try c.encode(status, forKey: .status)
        try c.encode(total, forKey: .total); try c.encode(completed, forKey: .completed); try c.encode(failed, forKey: .failed)
        try c.encode(created, forKey: .created); try c.encode(finishedAt, forKey: .finishedAt)
    }
}

/// One prompt of a job, waiting to run.
struct JobItem: Sendable {
    var jobId: String
    var index: Int
    /// The stored JobItemRequest as JSON: {"prompt": text or [ids], "max_tokens", "temperature", …}.
    var request: String
}

/// Jobs and their results in a SQLite file. A job is committed (synchronous, WAL) before its id is returned, each
/// result is committed as it completes, so a job accepted is never lost: after a crash, items without a result are
/// simply pending again.
public final class JobStore: Sendable {
    let db: DatabaseQueue

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        db = try DatabaseQueue(path: path, configuration: config)
        try db.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = WAL") }
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            // item.status: 'pending', 'done' or 'failed'; item.result: its results line (JSON) once it has run.
            try db.execute(sql: """
                CREATE TABLE job (id TEXT PRIMARY KEY, created INTEGER NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0,
                                  total INTEGER NOT NULL, finished_at INTEGER);
                CREATE TABLE item (job_id TEXT NOT NULL REFERENCES job(id), idx INTEGER NOT NULL, request TEXT NOT NULL,
                                   status TEXT NOT NULL DEFAULT 'pending', result TEXT, PRIMARY KEY (job_id, idx));
                CREATE INDEX item_pending ON item(status, job_id, idx);
                """)
        }
        try m.migrate(db)
    }

    /// Stores a new job with its items, in order (each kept as its JSON); returns its id.
    func create(_ items: [JobItemRequest]) throws -> String {
        let id = randomId("job_")
        let now = Int(Date().timeIntervalSince1970)
        try db.write { db in
            try db.execute(sql: "INSERT INTO job (id, created, total) VALUES (?, ?, ?)", arguments: [id, now, items.count])
            let insert = try db.makeStatement(sql: "INSERT INTO item (job_id, idx, request) VALUES (?, ?, ?)")
            for (i, item) in items.enumerated() { try insert.execute(arguments: [id, i, wireJSON(item)]) }
        }
        return id
    }

    /// Jobs with their item counts by status, in one query; `filter` is a WHERE clause on `job`, or empty.
    private func views(_ db: Database, filter: String = "", arguments: StatementArguments = []) throws -> [JobView] {
        try Row.fetchAll(db, sql: """
            SELECT job.id, job.created, job.cancelled, job.total, job.finished_at,
                   COUNT(CASE WHEN item.status = 'done' THEN 1 END) AS done,
                   COUNT(CASE WHEN item.status = 'failed' THEN 1 END) AS failed,
                   COUNT(CASE WHEN item.status = 'pending' THEN 1 END) AS pending
            FROM job LEFT JOIN item ON item.job_id = job.id
            \(filter)
            GROUP BY job.id ORDER BY job.created DESC, job.rowid DESC
            """, arguments: arguments).map { row in
            let done: Int = row["done"], failed: Int = row["failed"], pending: Int = row["pending"]
            let cancelled: Bool = row["cancelled"]
            let status = cancelled ? "cancelled"
                : pending == 0 ? (failed > 0 && done == 0 ? "failed" : "completed")
                : (done + failed > 0 ? "running" : "queued")
            return JobView(id: row["id"], status: status, total: row["total"], completed: done, failed: failed,
                           created: row["created"], finishedAt: row["finished_at"])
        }
    }

    func job(_ id: String) throws -> JobView? {
        try db.read { db in try views(db, filter: "WHERE job.id = ?", arguments: [id]).first }
    }

    /// Every job, newest first.
    func jobs() throws -> [JobView] {
        try db.read { db in try views(db) }
    }

    /// Up to `limit` items still to run, oldest job first, skipping `busy` ones (already running) and cancelled jobs.
    func pending(limit: Int, excluding busy: Set<String>) throws -> [JobItem] {
        try db.read { db in
            try Row.fetchAll(db, sql: """
                SELECT item.job_id, item.idx, item.request FROM item JOIN job ON job.id = item.job_id
                WHERE item.status = 'pending' AND job.cancelled = 0 ORDER BY job.created, item.job_id, item.idx
                LIMIT ?
                """, arguments: [limit + busy.count])
                .map { JobItem(jobId: $0["job_id"], index: $0["idx"], request: $0["request"]) }
                .filter { !busy.contains("\($0.jobId)/\($0.index)") }
                .prefix(limit).map { $0 }
        }
    }

    /// Records an item's result (one JSON line) and closes the job when it was the last.
    func finish(_ item: JobItem, result: String, failed: Bool) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE item SET status = ?, result = ? WHERE job_id = ? AND idx = ? AND status = 'pending'",
                           arguments: [failed ? "failed" : "done", result, item.jobId, item.index])
            let left = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item WHERE job_id = ? AND status = 'pending'", arguments: [item.jobId]) ?? 0
            if left == 0 {
                try db.execute(sql: "UPDATE job SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                               arguments: [Int(Date().timeIntervalSince1970), item.jobId])
            }
        }
    }

    /// Cancels a job that has not finished: its pending items will not run; finished results stay.
    func cancel(_ id: String) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE job SET cancelled = 1, finished_at = ? WHERE id = ? AND cancelled = 0 AND finished_at IS NULL",
                           arguments: [Int(Date().timeIntervalSince1970), id])
        }
    }

    /// The results of a job's finished items, in index order (JSON lines).
    func results(_ id: String) throws -> [String] {
        try db.read { db in
            try String.fetchAll(db, sql: "SELECT result FROM item WHERE job_id = ? AND result IS NOT NULL ORDER BY idx", arguments: [id])
        }
    }
}
