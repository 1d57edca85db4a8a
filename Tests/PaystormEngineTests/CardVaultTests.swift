import Foundation
import GRDB
import Testing
@testable import PaystormEngine
@testable import PaystormStore

@Suite("Card details and vault")
struct CardVaultTests {
    let visa = "4111111111111111"
    let cvv = "123"

    func card(_ number: String = "4111111111111111", expiry: String = "12/27", cvv: String = "123") throws -> CardDetails {
        try CardDetails(number: number, expiry: expiry, cvv: cvv, currentYear: 2026, currentMonth: 11)
    }

    func vault() throws -> CardVault {
        try CardVault(encryptionKey: Data(repeating: 7, count: 32), tokenKey: Data(repeating: 9, count: 32))
    }

    /// `db` at the engine's current schema: the vault as its migrations leave it.
    @discardableResult
    func migrated(_ db: DatabaseQueue = try! DatabaseQueue()) throws -> DatabaseQueue {
        var migrator = Store.migrator
        EngineSchema.register(in: &migrator)
        try migrator.migrate(db)
        return db
    }

    @Test func validatesNumberExpiryAndCVV() throws {
        #expect(try card().last4 == "1111")
        #expect(try card("4111 1111 1111 1111").number == visa)
        #expect(try card(expiry: "11/26").expiryYear == 2026, "the current month is still valid")
        #expect(throws: CardError.numberFailsLuhn) { try card("4111111111111112") }
        #expect(throws: CardError.numberLength(8)) { try card("41111111") }
        #expect(throws: CardError.numberNotDigits) { try card("4111-1111-1111-111a") }
        #expect(throws: CardError.expired("10/26")) { try card(expiry: "10/26") }
        #expect(throws: CardError.expiryFormat("13/27")) { try card(expiry: "13/27") }
        #expect(throws: CardError.expiryFormat("1227")) { try card(expiry: "1227") }
        #expect(throws: CardError.cvvFormat) { try card(cvv: "12") }
        #expect(throws: CardError.cvvFormat) { try card(cvv: "12a") }
    }

    @Test func displayNeverShowsMoreThanFirstSixAndLastFour() throws {
        let details = try card()
        #expect(details.masked == "411111******1111")
        // Shorter numbers show their last four only: first 6 and last 4 of 12 digits left two hidden, ten candidates by Luhn.
        #expect(try card("500000123454").masked == "********3454")
        #expect(try card("4222222222222").masked == "*********2222")
        #expect(try card("500000123454").displayableFirst6 == "" && details.displayableFirst6 == "411111")
        #expect(!details.description.contains(visa))
        #expect(!details.description.contains(cvv))
        for error in [CardError.numberFailsLuhn, .expired("10/26"), .cvvFormat] {
            #expect(!error.description.contains(visa))
        }
    }

    @Test func storesOnlyCiphertextAndDecryptsBack() throws {
        let vault = try vault()
        let db = try migrated()
        let details = try card()
        let token = try db.write { try vault.store(details, in: $0) }
        #expect(token.hasPrefix("tok_") && !token.contains("1111"))
        #expect(try db.write { try vault.store(details, in: $0) } == token, "one card, one token")
        #expect(try db.read { try vault.cardNumber(for: token, in: $0) } == visa)
        #expect(throws: CardVaultError.unknownToken("tok_nope")) { try db.read { try vault.cardNumber(for: "tok_nope", in: $0) } }
    }

    @Test func tamperedCiphertextIsRejected() throws {
        let vault = try vault()
        let db = try migrated()
        let token = try db.write { try vault.store(try card(), in: $0) }
        try db.write { try $0.execute(sql: "UPDATE card_vault SET ciphertext = zeroblob(length(ciphertext))") }
        #expect(throws: CardVaultError.self) { try db.read { try vault.cardNumber(for: token, in: $0) } }
    }

    /// Every card gets its own GCM nonce, the same one every time, and none
    /// of its bytes is in the token. (A reused nonce under one key with two
    /// different numbers would leak their XOR and the authentication key.)
    @Test func noncesAreDistinctPerCardAndStable() throws {
        let vault = try vault()
        func nonces(_ numbers: [String]) throws -> [Data] {
            let db = try migrated()
            return try numbers.map { number in
                let token = try db.write { try vault.store(try card(number), in: $0) }
                let box = try #require(try db.read { try Data.fetchOne($0, sql: "SELECT ciphertext FROM card_vault WHERE token = ?", arguments: [token]) })
                #expect(!token.contains(Hex.encode(box.prefix(12))))
                return Data(box.prefix(12))
            }
        }
        // Luhn-valid 16-digit numbers.
        let numbers = (0..<500).map { index -> String in
            let body = "4" + String(repeating: "0", count: 14 - String(index).count) + String(index)
            let check = (0...9).first { digit in
                let digits = (body + String(digit)).reversed().compactMap(\.wholeNumberValue)
                return digits.enumerated().reduce(0) { sum, item in
                    let doubled = item.offset % 2 == 1 ? item.element * 2 : item.element
                    return sum + (doubled > 9 ? doubled - 9 : doubled)
                } % 10 == 0
            }!
            return body + String(check)
        }
        let first = try nonces(numbers)
        #expect(Set(first).count == numbers.count)
        #expect(try nonces(numbers.reversed()) == first.reversed(), "a card's nonce does not depend on what was stored before")
    }

    /// Cards are rows in the order they were first stored, and a lookup
    /// goes through the index of token keys, not a scan.
    @Test func cardsAreAppendedInOrderAndFoundThroughTheTokenKeyIndex() throws {
        let vault = try vault()
        let db = try migrated()
        let numbers = [visa, "5555555555554444", "378282246310005", "6011111111111117"]
        let tokens = try numbers.map { number in try db.write { try vault.store(try card(number), in: $0) } }
        _ = try db.write { try vault.store(try card(numbers[1]), in: $0) }
        try db.read { (db: Database) throws -> Void in
            #expect(try String.fetchAll(db, sql: "SELECT token FROM card_vault ORDER BY card_id") == tokens)
            #expect(try Int64.fetchAll(db, sql: "SELECT token_key FROM card_vault ORDER BY card_id") == tokens.map(CardVault.tokenKey))
            for (token, number) in zip(tokens, numbers) { #expect(try vault.cardNumber(for: token, in: db) == number) }
            let plan = try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + EngineStatement.vaultContains.sql, arguments: [1, "tok_x"])
                .map { $0["detail"] as String }.joined(separator: "; ")
            #expect(plan.contains("INDEX card_vault_token_key (token_key=?)"), "\(plan)")
        }
    }

    /// The index key is 64 bits of the token: two tokens can share one, and
    /// are still two cards, each found by its own token.
    @Test func tokensSharingAKeyAreTwoCards() throws {
        let vault = try vault()
        let db = try migrated()
        let details = try card()
        let token = vault.token(for: details)
        let other = "tok_sharing_the_key"
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO card_vault (token_key, token, ciphertext, first6, last4, expiry_month, expiry_year)
                VALUES (?, ?, x'00', '555555', '4444', 1, 2030)
                """, arguments: [CardVault.tokenKey(token), other])
        }
        #expect(try db.write { try vault.store(details, in: $0) } == token)
        #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM card_vault") } == 2, "the card is stored beside the other")
        #expect(try db.read { try vault.cardNumber(for: token, in: $0) } == visa)
        #expect(throws: CardVaultError.self) { try db.read { try vault.cardNumber(for: other, in: $0) } }
        _ = try db.write { try vault.store(details, in: $0) }
        #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM card_vault") } == 2, "and stored once")
    }

    /// Scans every cell of every table, as text and as bytes, for the PAN and the CVV.
    @Test func databaseScanFindsNoPlaintextCardNumberOrCVV() throws {
        let vault = try vault()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("paystorm-vault-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vault.sqlite").path
        do {
            let db = try migrated(try DatabaseQueue(path: path))
            for number in [visa, "5555555555554444", "378282246310005"] {
                _ = try db.write { try vault.store(try card(number, cvv: "987"), in: $0) }
            }
            let tables = try db.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
            for table in tables {
                let rows = try db.read { try Row.fetchAll($0, sql: "SELECT * FROM \(table)") }
                for row in rows {
                    for (_, value) in row {
                        let text = String(describing: value)
                        #expect(!text.contains("4111111111111111") && !text.contains("5555555555554444") && !text.contains("378282246310005"))
                    }
                }
            }
        }
        // And the raw file bytes, including free pages.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for secret in ["4111111111111111", "5555555555554444", "378282246310005", "987"] where secret.count > 3 {
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "found \(secret) in the database file")
        }
    }
}
