import Foundation
import Hummingbird
import Logging
import MoEEngine
import ServiceLifecycle

/// The HTTP server over a running engine: routes, job store and runner, graceful shutdown.
public final class APIServer: @unchecked Sendable {
    public let service: GenerationService
    public let store: JobStore
    let responseStore: ResponseStore
    let background = BackgroundResponses()
    public let runner: JobRunner
    public let config: ServerConfig
    let info: ClusterInfo

    public init(service: GenerationService, config: ServerConfig, info: ClusterInfo) throws {
        self.service = service
        self.config = config
        self.info = info
        store = try JobStore(path: config.jobsDB)
        responseStore = try ResponseStore(db: store.db, retentionDays: config.responseRetentionDays)
        runner = JobRunner(store: store, service: service, maxConcurrent: config.jobConcurrency)
    }

    public func router() -> Router<BasicRequestContext> {
        let r = Router()
        Routes(service: service, store: store, responseStore: responseStore, background: background, runner: runner, config: config, info: info).register(r)
        return r
    }

    /// Serves until SIGTERM/SIGINT (or until the calling task is cancelled); then stops accepting, lets running requests
    /// finish within the shutdown timeout, cancels the rest (their job items stay pending in the store) and returns.
    /// `onReady` receives the bound port.
    public func run(onReady: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        var logger = Logger(label: "moe-serve")
        logger.logLevel = .warning
        let app = Application(router: router(), configuration: .init(address: .hostname(config.host, port: config.port), serverName: "moe-serve"),
                              onServerRunning: { ch in onReady(ch.localAddress?.port ?? 0) }, logger: logger)
        service.engine.startLoop()
        let runnerTask = Task { await runner.run() }
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        // Graceful part: no new work; wait for what runs, then cancel what is left.
        runner.stop()
        let deadline = Date().addingTimeInterval(config.shutdownTimeoutSeconds)
        while service.engine.outstandingRequests > 0 && Date() < deadline { try? await Task.sleep(nanoseconds: 50_000_000) }
        runner.cancelAll()
        background.cancelAll()
        await runnerTask.value
        service.engine.stopLoop()
    }
}
