import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import PaystormServer

@Suite("TLS: serve HTTPS from PEM files; refuse half a configuration")
struct TLSTests {
    /// A self-signed certificate for 127.0.0.1 and localhost (EC P-256, valid for a century), for tests only.
    static let certificate = """
-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUdnt//+G13I3aQ/csmY0ucS0VweEwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyNjE2MDcyM1oYDzIxMjYxMTAy
MTYwNzIzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASAQ8PO75ZvXpnKUVuNlLSNMzMGb7Rgwoa3/1Q93mZ/Aim0uACs4WMi
U0wJSRBjzomFiq9VFsJeRrn/ecfMgvoeo28wbTAdBgNVHQ4EFgQUFeGv8E7n/TsX
iDbMLnnWRF1GiGkwHwYDVR0jBBgwFoAUFeGv8E7n/TsXiDbMLnnWRF1GiGkwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIgZOnDWTi0ql+Sk5fOhaZ3QMG4TsBNuGXXSbur4v9aVbQCIQDO
4neFInIzllpwAmmUr0mILmwG0ZNFg+YFxJFAQANFnw==
-----END CERTIFICATE-----
"""

    static let key = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZqbFPVQWrQQ7rbEI
57THbXDhRhe69XmsKqIFFXK/QA6hRANCAASAQ8PO75ZvXpnKUVuNlLSNMzMGb7Rg
woa3/1Q93mZ/Aim0uACs4WMiU0wJSRBjzomFiq9VFsJeRrn/ecfMgvoe
-----END PRIVATE KEY-----
"""

    @Test("with a certificate and key the API answers over HTTPS")
    func https() async throws {
        let directory = TemporaryDirectory()
        try Self.certificate.write(toFile: directory.file("cert.pem"), atomically: true, encoding: .utf8)
        try Self.key.write(toFile: directory.file("key.pem"), atomically: true, encoding: .utf8)
        let runner = try ServerFixture.runner(in: directory)
        try runner.start()
        let server = try PaymentServer.httpServer(certificate: directory.file("cert.pem"), key: directory.file("key.pem"))
        let app = Application(router: ServerFixture.api(runner).router(), server: server)
        try await app.test(.ahc(.https)) { client in
            let response = try await client.execute(uri: "/health", method: .get)
            #expect(response.status == .ok)
        }
        await runner.stop()
    }

    @Test("half a configuration, a missing file or a key that is not PEM is a named error")
    func errors() throws {
        let directory = TemporaryDirectory()
        try Self.certificate.write(toFile: directory.file("cert.pem"), atomically: true, encoding: .utf8)
        try "not a key".write(toFile: directory.file("bad.pem"), atomically: true, encoding: .utf8)
        #expect(throws: ServerError.self) { try PaymentServer.httpServer(certificate: directory.file("cert.pem"), key: nil) }
        do {
            _ = try PaymentServer.httpServer(certificate: directory.file("missing.pem"), key: directory.file("bad.pem"))
            Issue.record("a missing certificate file was accepted")
        } catch {
            #expect("\(error)".contains("--tls-certificate"))
        }
        do {
            _ = try PaymentServer.httpServer(certificate: directory.file("cert.pem"), key: directory.file("bad.pem"))
            Issue.record("a bad key file was accepted")
        } catch {
            #expect("\(error)".contains("--tls-key"))
        }
        _ = try PaymentServer.httpServer(certificate: nil, key: nil)
    }
}
