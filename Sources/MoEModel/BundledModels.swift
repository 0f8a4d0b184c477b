import Foundation

/// The demo models shipped in Models/ (demo-mixtral, demo-draft): the embedded default when no model is given.
public enum BundledModels {
    /// `$MOE_DEMO_MODEL` / `$MOE_DEMO_DRAFT`, else Models/<name> in the working directory, else beside the package
    /// the running executable was built in (.build/<config>/<exe> → package root).
    public static func path(_ name: String = "demo-mixtral") -> String? {
        let env = ProcessInfo.processInfo.environment
        if name == "demo-mixtral", let p = env["MOE_DEMO_MODEL"] { return p }
        if name == "demo-draft", let p = env["MOE_DEMO_DRAFT"] { return p }
        var dirs = [FileManager.default.currentDirectoryPath]
        var d = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 { dirs.append(d.path); d = d.deletingLastPathComponent() }
        return dirs.map { $0 + "/Models/\(name)" }.first { FileManager.default.fileExists(atPath: $0 + "/config.json") }
    }
}
