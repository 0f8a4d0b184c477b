/// Runs one command body and turns whatever it throws into stderr text and an exit status,
/// so every command reports errors the same way.
public enum CommandRunner {
    public static func run(console: Console, _ body: () async throws -> Void) async -> Int32 {
        do {
            try await body()
            return ExitStatus.success.rawValue
        } catch {
            console.errLine(ErrorReport.message(for: error))
            return ExitStatus.of(error).rawValue
        }
    }
}
