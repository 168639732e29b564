//! Conformance of `crate::filter` with Jayway JsonPath 2.9.0 as ISC
//! uses it for subscription filters.
//!
//! Every example of ISC's "Filtering events" page and of the trigger spec is
//! here, each as (payload, filter, expected match). Expected values are what
//! Jayway gives (reasoned from its evaluator; where the page states the
//! outcome, it is followed). Payloads are copied from the ISC docs/spec
//! examples; nothing is read from disk.

use crate::filter::{validate, EvalError, EventBudget, Filter, FilterSet, Validation};
use serde_json::{json, Value};

// --- payloads ---------------------------------------------------------------

/// The Identity Attributes Changed input shown on the "Filtering events" page.
const DOC_PAGE: &str = r#"{
  "identity": {"id": "ee769173319b41d19ccec6cea52f237b", "name": "john.doe", "type": "IDENTITY"},
  "changes": [
    {"attribute": "department", "oldValue": "Sales", "newValue": "Marketing"},
    {"attribute": "manager",
     "oldValue": {"id": "ee769173319b41d19ccec6c235423237b", "name": "robert.brown", "type": "IDENTITY"},
     "newValue": {"id": "ee769173319b41d19ccec6c235423236c", "name": "mary.johnson", "type": "IDENTITY"}},
    {"attribute": "cloudLifecycleState", "oldValue": "active", "newValue": "terminated"}
  ]
}"#;

/// idn:identity-attributes-changed example input.
const IAC: &str = r#"{"identity":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"changes":[{"attribute":"department","oldValue":"sales","newValue":"marketing"}]}"#;

/// idn:account-aggregation-completed example input.
const AGG: &str = r#"{"source":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"status":"Success","started":"2020-06-29T22:01:50.474Z","completed":"2020-06-29T22:02:04.090Z","errors":["Accounts unable to be aggregated."],"warnings":["Account Skipped"],"stats":{"scanned":200,"unchanged":190,"changed":6,"added":4,"removed":3}}"#;

/// idn:access-request-post-approval example input.
const ARPA: &str = r#"{"accessRequestId":"2c91808b6ef1d43e016efba0ce470904","requestedFor":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"requestedItemsStatus":[{"id":"2c91808b6ef1d43e016efba0ce470904","name":"Engineering Access","description":"Access to engineering database","type":"ACCESS_PROFILE","operation":"Add","comment":"William needs this access to do his job.","clientMetadata":{"applicationName":"My application"},"approvalInfo":[{"approvalComment":"This access looks good.  Approved.","approvalDecision":"APPROVED","approverName":"Stephen.Austin","approver":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"}}]}],"requestedBy":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"}}"#;

/// idn:post-provisioning example input.
const PROV: &str = r#"{"trackingNumber":"4b4d982dddff4267ab12f0f1e72b5a6d","sources":"Corp AD, Corp LDAP, Corp Salesforce","action":"IdentityRefresh","errors":["Connector AD Failed"],"warnings":["Notification Skipped due to invalid email"],"recipient":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"requester":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"accountRequests":[{"source":{"id":"4e4d982dddff4267ab12f0f1e72b5a6d","type":"SOURCE","name":"Corporate Active Directory"},"accountId":"CN=Rob.Robertson,ou=csm,ou=sales,dc=helpco,dc=com","accountOperation":"Modify","provisioningResult":"SUCCESS","provisioningTarget":"Corp AD","ticketId":"72619262","attributeRequests":[{"attributeName":"memberOf","attributeValue":"CN=sales,DC=helpco,DC=com","operation":"Add"}]}]}"#;

/// Native Change Account Updated example input (docs).
const NCAU: &str = r#"{"identity":{"manager":{"name":"Martena Heath","id":"2c91808378eb9fa30178fb8caf90097f","type":"IDENTITY","email":"martena.heath@sample_email.com"},"name":"Ann English","alias":"Ann.English","id":"2c91808978eb9fab0178fb8ca6d308fb","type":"IDENTITY","email":"ann.english@sample_email.com"},"singleValueAttributeChanges":[{"newValue":"Call Center Representative","name":"title","oldValue":"Call Center Manager"}],"entitlementChanges":[{"removed":[{"owner":null,"name":"AccountsReceivable","id":"d0470502d73d4c2e8c7543c712f518ca","value":"CN=AccountsReceivable,OU=Groups,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"}],"added":[{"owner":null,"name":"Accounts Payable","id":"2c91808978eb9fab0178fb9482620b71","value":"CN=AccountsPayable,OU=Groups,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"}],"attributeName":"memberOf"}],"eventType":"ACCOUNT_UPDATED","source":{"owner":{"name":"Aaron Andrew","id":"2c9180867a7c46d0017a7ca099d50531","type":"IDENTITY","email":"aaron.andrew@sample_email.com"},"name":"Active Directory","alias":"Active Directory [source]","id":"2c91808a78efc63e0178fb8624b248c5","type":"SOURCE","governanceGroup":{"id":"fd0d1393-35fb-47d8-9809-0e385b73f25e","name":"Active Directory Owners","type":"GOVERNANCE_GROUP"}},"accountChangeTypes":["ATTRIBUTES_CHANGED","ENTITLEMENTS_ADDED","ENTITLEMENTS_REMOVED"],"multiValueAttributeChanges":[{"removedValues":[],"addedValues":["User Account is Disabled"],"name":"accountFlags"}],"account":{"name":"Ann.English","id":"2c91808378eb9fa30178fb9481a30afa","type":"ACCOUNT","uuid":"{08ee6c6d-7d02-4978-9417-d92ba6a5ed50}","correlated":true,"nativeIdentity":"CN=Ann English,OU=Call Center,OU=AI,OU=Demo,DC=seri,DC=sailpointdemo,DC=com"}}"#;

/// idn:identity-created example input.
const IDC: &str = r#"{"identity":{"type":"IDENTITY","id":"2c91808568c529c60168cca6f90c1313","name":"William Wilson"},"attributes":{"firstname":"John"}}"#;

/// idn:campaign-activated example input.
const CAMP: &str = r#"{"campaign":{"id":"2c91808576f886190176f88cac5a0010","name":"Manager Access Campaign","description":"Audit access for all employees.","created":"2021-02-16T03:04:45.815Z","modified":null,"deadline":"2021-03-16T03:04:45.815Z","type":"MANAGER","campaignOwner":{"id":"37f080867702c1910177031320c40n27","displayName":"William Wilson","email":"william.wilson@example.com"},"status":"ACTIVE"}}"#;

/// The spec's subscription / validate-filter example input.
const SPEC: &str = r#"{"identityId": "201327fda1c44704ac01181e963d463c"}"#;

/// Synthetic document for edge cases.
const EDGE: &str = r#"{
  "s": "5", "s10": "10", "n": 5, "f": 5.5, "neg": -5, "big": 12345678901234567890, "zero": 0,
  "t": true, "nul": null, "empty": "", "ea": [], "eo": {},
  "arr": [10, 20, 30], "tags": ["a", "b", "1"], "nums": [1, 2.5, "x", 3],
  "matrix": [[1, 2], [3, 4]], "objs": [{"k": 1}, {"k": 2, "x": null}, {"j": 3}],
  "uni": "Zoë", "emoji": "😀", "q": "it's", "dq": "say \"hi\"", "bs": "a\\b",
  "a.b": "dotted", "sp ace": "spaced", "mixed": [1, "1", true, null],
  "when": "2020-04-27T16:48:33.597Z", "pathy": ["$.n", "@", "[1]", "plain"],
  "quoted": ["'x'"], "deep": {"l1": {"l2": {"l3": {"name": "bottom"}}}}
}"#;

// --- helpers ----------------------------------------------------------------

fn doc(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad test payload: {e}\n{text}"))
}

/// Table-driven check: every (payload, filter, expected match). Reports all
/// failures at once.
fn check(cases: &[(&str, &str, bool)]) {
    let mut failures = Vec::new();
    for (i, (payload, expr, expected)) in cases.iter().enumerate() {
        let d = doc(payload);
        match Filter::compile(expr) {
            Err(e) => failures.push(format!("#{i} `{expr}`: compile error {e}")),
            Ok(f) => {
                let got = f.evaluate(&d);
                // An evaluation error is a (fail-closed) non-match.
                let ok = match &got {
                    Ok(b) => b == expected,
                    Err(_) => !expected,
                };
                if !ok {
                    failures.push(format!("#{i} `{expr}`: expected {expected}, got {got:?}"));
                }
                if f.matches(&d) != *expected {
                    failures.push(format!("#{i} `{expr}`: matches() != {expected}"));
                }
                // As a trigger's filter set (twice, and beside a route without a filter): the same verdict.
                let mut set = FilterSet::new();
                for member in [Some(&f), None, Some(&f)] {
                    set.push(member);
                }
                let verdicts = set.evaluate(&d, &mut EventBudget::new(set.distinct()));
                // And as the router asks, from the body (the index on a borrowed parse where it covers the set).
                let body = serde_json::to_vec(&d).unwrap();
                let direct = set
                    .evaluate_body(&body, &mut EventBudget::new(set.distinct()))
                    .unwrap();
                for v in [&verdicts, &direct] {
                    if v.get(0) != Some(&got) || v.get(1).is_some() || v.get(2) != Some(&got) {
                        failures.push(format!(
                            "#{i} `{expr}`: the filter set's verdict differs from {got:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Filters that must not compile, with the expected error position.
fn check_invalid(cases: &[(&str, usize)]) {
    let mut failures = Vec::new();
    for (expr, pos) in cases {
        match Filter::compile(expr) {
            Ok(_) => failures.push(format!("`{expr}`: compiled, expected error at {pos}")),
            Err(e) if e.position != *pos => failures.push(format!(
                "`{expr}`: error at {} ({}), expected {pos}",
                e.position, e
            )),
            Err(e) => assert!(e.to_string().ends_with(&format!(" at position {pos}"))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn v(is_valid: bool, is_valid_json_path: bool, is_path_exist: bool) -> Validation {
    Validation {
        is_valid,
        is_valid_json_path,
        is_path_exist,
    }
}

// --- ISC "Filtering events" page --------------------------------------------

#[test]
fn doc_page_expression_table() {
    check(&[
        (DOC_PAGE, "$", true),
        (
            DOC_PAGE,
            r#"$.changes[?(@.attribute == "department")]"#,
            true,
        ),
        (DOC_PAGE, "$.identity", true),
        (DOC_PAGE, "$..id", true),
        (DOC_PAGE, "$.changes[*]", true),
        (DOC_PAGE, "$.changes[1].attribute", true),
        (DOC_PAGE, "$.changes[0,1,2]", true),
        // Jayway ignores the step: same as [0:2].
        (DOC_PAGE, "$.changes[0:2:1]", true),
        (DOC_PAGE, "$.changes[:2]", true),
        (DOC_PAGE, "$.changes[-1:]", true),
        (DOC_PAGE, r#"$[?($.identity.name == "john.doe")]"#, true),
        // Same expressions on an event without the data.
        (IDC, r#"$.changes[?(@.attribute == "department")]"#, false),
        (IDC, "$.changes[*]", false),
        (IAC, "$.changes[1].attribute", false),
        (IAC, "$.changes[0,1,2]", true),
        (IAC, "$.changes[-1:]", true),
        (r#"{"changes": []}"#, "$.changes[-1:]", false),
        (r#"{"changes": []}"#, "$.changes[:2]", false),
        (SPEC, "$..id", false),
        (IAC, r#"$[?($.identity.name == "john.doe")]"#, false),
    ]);
}

#[test]
fn doc_page_script_expression_is_not_jayway() {
    // The table lists `[(@.length-1)]`; Jayway has no script expressions and
    // rejects it ("Could not parse token starting at position 9").
    check_invalid(&[("$.changes[(@.length-1)]", 9)]);
}

#[test]
fn doc_page_functions() {
    check(&[
        (DOC_PAGE, "$[?($.changes.length() >= 3)]", true),
        (IAC, "$[?($.changes.length() >= 3)]", false),
        (IDC, "$[?($.changes.length() >= 3)]", false),
        // concat() yields a string whenever its arguments are found...
        (
            r#"{"identity": {"attributes": {"firstname": "John", "lastname": "Doe"}}}"#,
            r#"$.concat($.identity.attributes.firstname," ",$.identity.attributes.lastname)"#,
            true,
        ),
        // ...and Jayway throws PathNotFoundException when one is missing.
        (
            DOC_PAGE,
            r#"$.concat($.identity.attributes.firstname," ",$.identity.attributes.lastname)"#,
            false,
        ),
        (DOC_PAGE, "$.changes.length()", true),
        (DOC_PAGE, "$.changes.size()", true),
        (DOC_PAGE, "$[?($.changes.size() == 3)]", true),
        (DOC_PAGE, "$[?(@.changes.length() == 2)]", false),
    ]);
}

#[test]
fn doc_page_operator_table() {
    let created_597 = r#"{"attributes": {"created": "2020-04-27T16:48:33.597Z"}}"#;
    let created_100 = r#"{"attributes": {"created": "2020-04-27T16:48:33.100Z"}}"#;
    let us_support = r#"{"changes": [{"attribute": "department", "oldValue": "Sales", "newValue": "US Customer support"}]}"#;
    let sales = r#"{"changes": [{"attribute": "department", "newValue": "sales"}]}"#;
    let alt_email = r#"{"identity": {"attributes": {"email": "a@x", "alternateEmail": "b@x"}}}"#;
    let no_alt_email = r#"{"identity": {"attributes": {"email": "a@x"}}}"#;
    check(&[
        (DOC_PAGE, r#"$[?($.identity.name == "john.doe")]"#, true),
        (
            DOC_PAGE,
            r#"$[?($.identity.name != "george.washington")]"#,
            true,
        ),
        (
            r#"{"identity": {"name": "george.washington"}}"#,
            r#"$[?($.identity.name != "george.washington")]"#,
            false,
        ),
        // String comparisons (lexicographic, as on the page).
        (
            created_597,
            "$[?($.attributes.created > '2020-04-27T16:48:33.200Z')]",
            true,
        ),
        (
            created_100,
            "$[?($.attributes.created > '2020-04-27T16:48:33.200Z')]",
            false,
        ),
        (
            DOC_PAGE,
            "$[?($.attributes.created > '2020-04-27T16:48:33.200Z')]",
            false,
        ),
        (
            created_597,
            "$[?($.attributes.created >= '2020-04-27T16:48:33.597Z')]",
            true,
        ),
        (
            created_100,
            "$[?($.attributes.created >= '2020-04-27T16:48:33.597Z')]",
            false,
        ),
        (
            created_597,
            "$[?($.attributes.created < '2020-04-27T16:48:33.200Z')]",
            false,
        ),
        (
            created_100,
            "$[?($.attributes.created < '2020-04-27T16:48:33.200Z')]",
            true,
        ),
        // The page writes `\<=` (MDX escaping); the filter is `<=`.
        (
            created_100,
            "$[?($.attributes.created <= '2020-04-27T16:48:33.200Z')]",
            true,
        ),
        (
            created_597,
            "$[?($.attributes.created <= '2020-04-27T16:48:33.200Z')]",
            false,
        ),
        (
            DOC_PAGE,
            r#"$.changes[?(@.attribute == "department" && @.newValue =~ /US.*Support/i)]"#,
            false,
        ),
        (
            us_support,
            r#"$.changes[?(@.attribute == "department" && @.newValue =~ /US.*Support/i)]"#,
            true,
        ),
        (
            us_support,
            r#"$.changes[?(@.attribute == "department" && @.newValue =~ /US.*Support/)]"#,
            false,
        ),
        (
            DOC_PAGE,
            "$.changes[?(@.attribute == 'department' && @.newValue in ['sales','engineering'])]",
            false,
        ),
        (
            sales,
            "$.changes[?(@.attribute == 'department' && @.newValue in ['sales','engineering'])]",
            true,
        ),
        (
            IAC,
            "$.changes[?(@.attribute == 'department' && @.newValue in ['sales','engineering'])]",
            false,
        ),
        (
            DOC_PAGE,
            "$.changes[?(@.attribute == 'department' && @.newValue nin ['sales','engineering'])]",
            true,
        ),
        (
            sales,
            "$.changes[?(@.attribute == 'department' && @.newValue nin ['sales','engineering'])]",
            false,
        ),
        // warnings absent: the operand is undefined, not a list -> no match.
        (
            DOC_PAGE,
            "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
            false,
        ),
        // The aggregation example says "Account Skipped" (capital S).
        (
            AGG,
            "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
            false,
        ),
        (
            r#"{"warnings": ["Account skipped"]}"#,
            "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
            true,
        ),
        (
            r#"{"warnings": ["Account skipped", "Other"]}"#,
            "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
            false,
        ),
        (
            r#"{"warnings": []}"#,
            "$[?($.warnings subsetof ['Account skipped','Invalid account'])]",
            true,
        ),
        (
            AGG,
            "$[?($.warnings anyof ['Account skipped','Invalid account'])]",
            false,
        ),
        (
            r#"{"warnings": ["x", "Invalid account"]}"#,
            "$[?($.warnings anyof ['Account skipped','Invalid account'])]",
            true,
        ),
        (
            AGG,
            "$[?($.warnings noneof ['Account skipped','Invalid account'])]",
            true,
        ),
        (
            r#"{"warnings": ["x", "Invalid account"]}"#,
            "$[?($.warnings noneof ['Account skipped','Invalid account'])]",
            false,
        ),
        (
            DOC_PAGE,
            "$[?($.warnings noneof ['Account skipped','Invalid account'])]",
            false,
        ),
        // `$[?($.warnings size 1]` on the page lacks its `)`; fixed:
        (AGG, "$[?($.warnings size 1)]", true),
        (
            r#"{"warnings": ["a", "b"]}"#,
            "$[?($.warnings size 1)]",
            false,
        ),
        (
            DOC_PAGE,
            r#"$.changes[?(@.attribute == "cloudLifecycleState" && @.newValue == "terminated")]"#,
            true,
        ),
        (
            IAC,
            r#"$.changes[?(@.attribute == "cloudLifecycleState" && @.newValue == "terminated")]"#,
            false,
        ),
        // identity.attributes missing: a definite path step is missing.
        (
            DOC_PAGE,
            "$.identity.attributes[?(!@.alternateEmail)]",
            false,
        ),
        (
            no_alt_email,
            "$.identity.attributes[?(!@.alternateEmail)]",
            true,
        ),
        (
            alt_email,
            "$.identity.attributes[?(!@.alternateEmail)]",
            false,
        ),
        (
            DOC_PAGE,
            r#"$.changes[?(@.attribute == "cloudLifecycleState" || @.attribute == "department")]"#,
            true,
        ),
        (
            IAC,
            r#"$.changes[?(@.attribute == "cloudLifecycleState" || @.attribute == "department")]"#,
            true,
        ),
        (
            r#"{"changes": [{"attribute": "manager"}]}"#,
            r#"$.changes[?(@.attribute == "cloudLifecycleState" || @.attribute == "department")]"#,
            false,
        ),
        (DOC_PAGE, r#"$[?($.identity.name contains "john")]"#, true),
        // "make sure `$[?($.identity.name contains "archer")]` doesn't fire"
        (
            DOC_PAGE,
            r#"$[?($.identity.name contains "archer")]"#,
            false,
        ),
    ]);
}

#[test]
fn doc_page_malformed_examples() {
    check_invalid(&[
        // `size` example as printed: the filter's `(` is never closed.
        ("$[?($.warnings size 1]", 3),
        // `\<=` as printed (MDX escape): not an operator, so `$.attributes.created`
        // is read as an existence test and `\<=` is left over.
        (
            "$[?($.attributes.created \\<= '2020-04-27T16:48:33.200Z')]",
            25,
        ),
    ]);
}

#[test]
fn doc_page_validate_request_example() {
    let input = doc(DOC_PAGE);
    assert_eq!(
        validate("$[?($.identity.name == \"john.doe\")]", &input),
        v(true, true, true)
    );
}

// --- spec examples ------------------------------------------------------------

#[test]
fn spec_subscription_filter_examples() {
    let f = r#"$[?($.identityId == "201327fda1c44704ac01181e963d463c")]"#;
    check(&[
        (SPEC, f, true),
        (r#"{"identityId": "someone-else"}"#, f, false),
        (
            r#"{"identity": {"id": "201327fda1c44704ac01181e963d463c"}}"#,
            f,
            false,
        ),
        (
            r#"{"identityId": "201327fda1c44704ac01181e963d463c", "_metadata": {"triggerType": "fireAndForget"}}"#,
            f,
            true,
        ),
    ]);
}

#[test]
fn spec_validate_filter_example() {
    let f = r#"$[?($.identityId == "201327fda1c44704ac01181e963d463c")]"#;
    // The spec's response example: all three true.
    assert_eq!(validate(f, &doc(SPEC)), v(true, true, true));
    assert_eq!(
        validate(f, &json!({"identityId": "x"})),
        v(false, true, true)
    );
    assert_eq!(validate(f, &json!({})), v(false, true, false));
    let out = serde_json::to_value(validate(f, &doc(SPEC))).unwrap();
    assert_eq!(
        out,
        json!({"isValid": true, "isValidJSONPath": true, "isPathExist": true})
    );
}

// --- filters on the other example payloads -----------------------------------

#[test]
fn example_payload_filters() {
    check(&[
        (ARPA, "$.requestedItemsStatus[?(@.type == 'ACCESS_PROFILE' && @.operation == 'Add')]", true),
        (ARPA, "$.requestedItemsStatus[?(@.type == 'ROLE')]", false),
        (ARPA, "$.requestedItemsStatus[*].approvalInfo[?(@.approvalDecision == 'APPROVED')]", true),
        (ARPA, "$..approvalInfo[?(@.approvalDecision == 'REJECTED')]", false),
        (ARPA, "$[?($.requestedFor.id == $.requestedBy.id)]", true),
        (ARPA, "$[?(@.requestedItemsStatus[0].clientMetadata.applicationName =~ /my app.*/i)]", true),
        (PROV, "$.accountRequests[?(@.provisioningResult != 'SUCCESS')]", false),
        (PROV, "$.accountRequests[?(@.provisioningResult == 'SUCCESS')].attributeRequests[?(@.attributeName == 'memberOf')]", true),
        (PROV, "$[?($.errors empty false)]", true),
        (PROV, "$[?($.errors size 0)]", false),
        (PROV, "$[?('Connector AD Failed' in $.errors)]", true),
        (PROV, "$[?($.errors contains 'Connector AD Failed')]", true),
        (PROV, "$[?($.sources contains 'LDAP')]", true),
        (NCAU, "$[?($.accountChangeTypes anyof ['ENTITLEMENTS_ADDED'])]", true),
        (NCAU, "$[?($.accountChangeTypes subsetof ['ATTRIBUTES_CHANGED'])]", false),
        (NCAU, "$[?('ATTRIBUTES_CHANGED' in $.accountChangeTypes)]", true),
        (NCAU, "$.entitlementChanges[?(@.attributeName == 'memberOf')].added[?(@.name == 'Accounts Payable')]", true),
        (NCAU, "$.entitlementChanges[*].removed[?(@.owner == null)]", true),
        (NCAU, "$.entitlementChanges[*].removed[?(@.owner)]", true),
        (NCAU, "$.entitlementChanges[*].removed[?(!@.owner)]", false),
        (NCAU, "$[?($.account.correlated == true)]", true),
        (NCAU, "$[?($.account.correlated == 'true')]", false),
        (NCAU, "$.multiValueAttributeChanges[?(@.removedValues empty true)]", true),
        (NCAU, "$..governanceGroup[?(@.type == 'GOVERNANCE_GROUP')]", true),
        (NCAU, "$..[?(@.email =~ /.*@sample_email\\.com/)]", true),
        (AGG, "$[?($.stats.changed > 5 && $.stats.added <= 4)]", true),
        (AGG, "$[?($.stats.scanned == 200.0)]", true),
        (AGG, "$[?($.status == 'Success' || $.status == 'Warning')]", true),
        (AGG, "$.stats[?(@.removed > @.added)]", false),
        (CAMP, "$.campaign[?(@.type == 'MANAGER' && @.status == 'ACTIVE')]", true),
        (CAMP, "$.campaign.modified", true), // a JSON null is a result
        (CAMP, "$.campaign[?(@.modified)]", true),
        (CAMP, "$.campaign[?(@.modified == null)]", true),
        (CAMP, "$.campaign[?(!@.modified)]", false),
        (IDC, "$[?($.attributes.firstname)]", true),
        (IDC, "$[?($.attributes.lastname)]", false),
        (IDC, "attributes.firstname", true), // implicit `$.`
    ]);
}

// --- edge cases ---------------------------------------------------------------

#[test]
fn missing_fields_and_nulls() {
    check(&[
        (EDGE, "$.missing", false),
        (EDGE, "$.deep.l1.missing.x", false),
        (EDGE, "$.s.x", false), // property of a string, definite path
        (EDGE, "$.nul", true),
        (EDGE, "$[?(@.missing == 'x')]", false),
        // Jayway: undefined != anything is true.
        (EDGE, "$[?(@.missing != 'x')]", true),
        (EDGE, "$[?(@.missing == null)]", false),
        (EDGE, "$[?(@.nul == null)]", true),
        (EDGE, "$[?(@.nul != null)]", false),
        (EDGE, "$[?(@.nul)]", true),
        (EDGE, "$[?(!@.nul)]", false),
        (EDGE, "$[?(!@.missing)]", true),
        (EDGE, "$[?(@.missing)]", false),
        (EDGE, "$.objs[?(@.x)]", true),
        (EDGE, "$.objs[?(@.x == null)]", true),
        (EDGE, "$.objs[?(@.k == 3)]", false),
        (EDGE, "$.objs[?(@.k != 1)]", true), // {"j":3} has no k: != is true
        (EDGE, "$[?(@.missing =~ /.*/)]", true), // undefined reads as ""
        (EDGE, "$[?(@.missing in [null])]", false),
        (EDGE, "$[?(@.nul in [null, 1])]", true),
        (EDGE, "$[?(@.missing.deeper)]", false),
        (EDGE, "$.objs[*].k", true),
        (EDGE, "$.objs[*].zzz", false),
        (EDGE, "$[?(@.objs[*].zzz empty true)]", true),
        // Bare indefinite path: exists unless a property is missing on the way.
        (EDGE, "$[?(@.ea[*])]", true),
        (EDGE, "$[?(@.objs[*].k)]", false),
        (EDGE, "$[?(@..name)]", true),
        (EDGE, "$[?(@..nothing)]", true),
    ]);
}

#[test]
fn type_mismatches() {
    check(&[
        (EDGE, "$[?(@.n == '5')]", true),
        (EDGE, "$[?(@.s == 5)]", true),
        (EDGE, "$[?(@.s == 5.0)]", false), // "5" vs BigDecimal 5.0 text "5.0"
        (EDGE, "$[?(@.n == 5.0)]", true),
        (EDGE, "$[?(@.n == 5e0)]", true),
        (EDGE, "$[?(@.f == 5.5)]", true),
        (EDGE, "$[?(@.f > 5)]", true),
        (EDGE, "$[?(@.neg == -5)]", true),
        (EDGE, "$[?(@.neg < -4.5)]", true),
        (EDGE, "$[?(@.big > 12345678901234567889)]", true),
        (EDGE, "$[?(@.n === '5')]", false),
        (EDGE, "$[?(@.n === 5)]", true),
        (EDGE, "$[?(@.n !== '5')]", true),
        // A number and a string are unordered in Jayway 2.9.0 (its ordering
        // evaluators take number/number and string/string only): all false,
        // and true under negation.
        (EDGE, "$[?(@.n > '10')]", false),
        (EDGE, "$[?(@.n < '10')]", false),
        (EDGE, "$[?(@.s10 > 9)]", false),
        (EDGE, "$[?(@.s10 < 9)]", false),
        (EDGE, "$[?(@.n < 'abc')]", false),
        (EDGE, "$[?(!(@.n < 'abc'))]", true),
        (EDGE, "$[?(@.s10 >= '10')]", true),
        (EDGE, "$[?(@.t == true)]", true),
        (EDGE, "$[?(@.t == 'true')]", false),
        (EDGE, "$[?(@.t > false)]", false),
        (EDGE, "$[?(@.nul < 1)]", false),
        (EDGE, "$[?(@.eo == 1)]", false),
        (EDGE, "$[?(@.arr == [10,20,30])]", true),
        (EDGE, "$[?(@.arr == [10,30,20])]", false),
        (
            EDGE,
            "$[?(@.deep.l1 == {'l2': {'l3': {'name': 'bottom'}}})]",
            true,
        ),
        (EDGE, "$[?(@.tags contains 1)]", true), // 1 equals "1"
        (EDGE, "$[?(@.tags contains 'c')]", false),
        (EDGE, "$[?(@.n in ['5'])]", true),
        (EDGE, "$[?(@.s in [5.0])]", false),
        (EDGE, "$[?(@.mixed anyof [true])]", true),
        (EDGE, "$[?(@.mixed noneof [false, 2])]", true),
        (EDGE, "$[?(@.n in 5)]", false),  // right side not a list
        (EDGE, "$[?(@.n nin 5)]", false), // same error: element rejected
        (EDGE, "$[?(@.n nin {'a': 5})]", true), // object: `in` is false
        (EDGE, "$[?(@.n =~ /5/)]", true), // numbers match as text
        (EDGE, "$[?(@.f =~ /5\\.5/)]", true),
        (EDGE, "$[?(@.t =~ /tr.e/)]", true),
        (EDGE, "$[?(@.tags =~ /b/)]", true), // any element
        (EDGE, "$[?(@.n size 1)]", false),   // size of a number
        (EDGE, "$[?(@.s size 1)]", true),
        (EDGE, "$[?(@.eo size 0)]", false), // objects have no size
        // Jayway 2.9.0 casts an object to a Collection here and throws: the
        // whole read fails, even for elements that would have matched.
        (EDGE, "$[?(@.eo empty true)]", false),
        (EDGE, "$[?(@.eo empty false)]", false),
        (EDGE, "$.objs[?(@ empty false)]", false),
        (EDGE, "$[?(@.ea empty true)]", true),
        (EDGE, "$[?(@.empty empty true)]", true),
        (EDGE, "$[?(@.n empty false)]", false),
        (EDGE, "$[?(@.s empty 1)]", false), // right side must be a boolean
        (EDGE, "$[?(@.s EMPTY false)]", true), // operators are case-insensitive
        (EDGE, "$[?(@.tags all ['a'])]", false),
        (EDGE, "$[?(@.t exists true)]", true),
    ]);
}

#[test]
fn value_list_quirks() {
    check(&[
        // list strings that compile as paths or parse as JSON never compare equal
        (EDGE, "$[?('plain' in @.pathy)]", true),
        (EDGE, "$[?('$.n' in @.pathy)]", false),
        (EDGE, "$[?('@' in @.pathy)]", false),
        (EDGE, "$[?('[1]' in @.pathy)]", false),
        // surrounding quotes of list strings are stripped
        (EDGE, "$[?('x' in @.quoted)]", true),
        (EDGE, "$[?(@.arr[-2:2] contains 30)]", true),
    ]);
}

#[test]
fn unicode_and_escapes() {
    check(&[
        (EDGE, "$[?(@.uni == 'Zoë')]", true),
        (EDGE, "$[?(@.uni == 'Zo\\u00eb')]", true),
        (EDGE, "$[?(@.uni =~ /zoë/i)]", true),
        (EDGE, "$[?(@.uni size 3)]", true),
        (EDGE, "$[?(@.emoji size 2)]", true), // UTF-16 units, as Java
        (EDGE, "$[?(@.emoji == '\\ud83d\\ude00')]", true),
        (EDGE, "$[?(@.uni > 'Zoe')]", true),
        (EDGE, "$[?(@.q == 'it\\'s')]", true),
        (EDGE, "$[?(@.q == \"it's\")]", true),
        (EDGE, "$[?(@.dq == \"say \\\"hi\\\"\")]", true),
        (EDGE, "$[?(@.dq == 'say \"hi\"')]", true),
        (EDGE, "$[?(@.bs == 'a\\\\b')]", true),
        (EDGE, "$['a.b']", true),
        (EDGE, "$[\"a.b\"]", true),
        (EDGE, "$['sp ace']", true),
        (EDGE, "$['q','s']", true),
        (EDGE, "$['nope1','nope2']", true), // Jayway merges into {}: still a result
        (EDGE, "$['deep']['l1']", true),
        (EDGE, "$[ 'deep' ].l1", true),
        (EDGE, "$[?(@['a.b'] == 'dotted')]", true),
        (EDGE, "$[?(@['sp ace'] == 'spaced')]", true),
        (r#"{"naïve": {"ключ": "значение"}}"#, "$.naïve.ключ", true),
        (
            r#"{"naïve": {"ключ": "значение"}}"#,
            "$[?(@.naïve.ключ =~ /знач.*/)]",
            true,
        ),
    ]);
}

#[test]
fn indexes_and_slices() {
    check(&[
        (EDGE, "$.arr[0]", true),
        (EDGE, "$.arr[2]", true),
        (EDGE, "$.arr[3]", false),
        (EDGE, "$.arr[-1]", true),
        (EDGE, "$.arr[-3]", true),
        (EDGE, "$.arr[-4]", false),
        (EDGE, "$.arr[5,6]", false),
        (EDGE, "$.arr[5,0]", true),
        (EDGE, "$.arr[ 0 , 1 ]", true),
        (EDGE, "$.matrix[1][0]", true),
        (EDGE, "$.matrix[1][2]", false),
        (EDGE, "$.s[0]", false), // not an array
        (EDGE, "$[?(@.arr[-1] == 30)]", true),
        (EDGE, "$[?(@.arr[1:] == [20,30])]", true),
        (EDGE, "$[?(@.arr[:-1] == [10,20])]", true),
        (EDGE, "$[?(@.arr[-2:] == [20,30])]", true),
        (EDGE, "$[?(@.arr[:2] == [10,20])]", true),
        (EDGE, "$[?(@.arr[0:2:2] == [10,20])]", true), // step ignored
        (EDGE, "$[?(@.arr[1:-1] empty true)]", true),  // negative end in [a:b] selects nothing
        (EDGE, "$[?(@.arr[5:] empty true)]", true),
        (EDGE, "$[?(@.arr[-9:] size 3)]", true),
        (EDGE, "$[?(@.arr[:9] size 3)]", true),
        (EDGE, "$.arr[1:-1]", false),
        (EDGE, "$.ea[0:1]", false),
        (EDGE, "$.arr[?(@ > 15)]", true),
        (EDGE, "$.arr[?(@ > 35)]", false),
        (EDGE, "$.matrix[?(@[1] == 4)]", true),
        (EDGE, "$.matrix[*][?(@ == 4)]", true),
        (EDGE, "$.matrix[?(4 in @)]", true),
    ]);
}

#[test]
fn deep_scan() {
    check(&[
        (EDGE, "$..name", true),
        (EDGE, "$..nothing", false),
        (EDGE, "$..l3.name", true),
        (EDGE, "$..['name']", true),
        (EDGE, "$..*", true),
        (EDGE, "$..[0]", true),
        (EDGE, "$..[?(@.name == 'bottom')]", true),
        (EDGE, "$..[?(@.name == 'top')]", false),
        (EDGE, "$[?(@..name contains 'bottom')]", true),
        (EDGE, "$[?(@..k anyof [2])]", true),
        (EDGE, "$[?(@..k subsetof [1, 2])]", true),
        (EDGE, "$[?(@..k size 2)]", true),
        (DOC_PAGE, "$..newValue[?(@.name == 'mary.johnson')]", true),
        (
            DOC_PAGE,
            "$..changes[?(@.attribute == 'manager')].newValue.name",
            true,
        ),
        (DOC_PAGE, "$[?(@..id size 3)]", true),
        // Jayway quirks after `..[n]`, kept (see eval.rs).
        (r#"{"a": [{"x": 1}, {"y": 2}]}"#, "$..[1].x", false),
        (r#"{"a": [{"x": 1}, {"y": 2}]}"#, "$..[0].x", true),
        (r#"{"a": [{"x": {"z": 1}}, {"y": 2}]}"#, "$..[1].x.z", true),
    ]);
}

#[test]
fn logic_and_grouping() {
    check(&[
        (EDGE, "$[?(@.n == 5 && (@.s == 'x' || @.t == true))]", true),
        (
            EDGE,
            "$[?((@.n == 5 && @.s == 'x') || @.t == false)]",
            false,
        ),
        (EDGE, "$[?(!(@.n == 5))]", false),
        (EDGE, "$[?(!(@.n == 6) && !@.missing)]", true),
        (EDGE, "$[?(!!@.n)]", true),
        (EDGE, "$[?(@.n==5&&@.t==true)]", true),
        (EDGE, "$[?(  @.n  ==  5  )]", true),
        (EDGE, "$[ ? ( @.n == 5 ) ]", true),
        (EDGE, "$[?(@.n == 5 || @.missing in 5)]", true), // short-circuit
        (EDGE, "$[?(@.missing in 5 || @.n == 5)]", false), // error rejects the element
        (EDGE, "$[?(@.n == $.n)]", true),
        (EDGE, "$.objs[?(@.k == $.objs[1].k)]", true),
        (EDGE, "$.objs[?(@.k < $.n)]", true),
        // Existence tests evaluate `$` against the current element (Jayway).
        (EDGE, "$.objs[?($.k)]", true),
        (EDGE, "$.objs[?($.n)]", false),
        (EDGE, "$.deep[?(@.l1.l2)]", true),
        (EDGE, "$.deep.l1[?(@.l2.l3.name == 'bottom')].l2.l3", true),
    ]);
}

#[test]
fn evaluation_errors_fail_closed() {
    let d = doc(EDGE);
    let err = |expr: &str| Filter::compile(expr).unwrap().evaluate(&d);
    assert_eq!(err("$.s[?(@ == 'x')]"), Err(EvalError::FilterOnPrimitive));
    assert_eq!(
        err("$[?(@.matrix contains 1)]"),
        Err(EvalError::NestedListValue)
    );
    assert_eq!(err("$[?(1 in @.matrix)]"), Err(EvalError::NestedListValue));
    assert_eq!(err("$.ea.max()"), Err(EvalError::EmptyAggregation("max")));
    assert_eq!(
        err("$[?(@.tags.sum() > 1)]"),
        Err(EvalError::EmptyAggregation("sum"))
    );
    assert_eq!(err("$.nums.sum()"), Ok(true));
    assert_eq!(err("$[?(@.nums.sum() == 6.5)]"), Ok(true));
    assert_eq!(
        err("$[?(@.nums.avg() > 2.1 && @.nums.min() == 1 && @.nums.max() == 3)]"),
        Ok(true)
    );
    assert_eq!(err("$[?(@.arr.stddev() > 8)]"), Ok(true));
    // Errors Jayway catches inside a filter only reject the element.
    assert_eq!(err("$[?(@.n in 'abc')]"), Ok(false));
    assert_eq!(err("$.missing"), Ok(false));
    assert_eq!(err("$.objs[?(@.k empty 1)]"), Ok(false));
    for expr in ["$.s[?(@ == 'x')]", "$[?(@.matrix contains 1)]"] {
        assert!(!Filter::compile(expr).unwrap().matches(&d), "{expr}");
    }
}

#[test]
fn source_and_debug() {
    let f = Filter::compile("  $.a  ").unwrap();
    assert_eq!(f.source(), "  $.a  ");
    assert!(format!("{f:?}").contains("$.a"));
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    assert_traits::<Filter>();
    let g = f.clone();
    assert!(g.matches(&json!({"a": 1})));
}

// --- invalid filters ------------------------------------------------------------

#[test]
fn invalid_filters_report_position() {
    let deep = format!("$[?({}@.a{})]", "(".repeat(70), ")".repeat(70));
    let nots = format!("$[?({}@.a)]", "!".repeat(70));
    check_invalid(&[
        ("", 0),
        ("   ", 3),
        ("$.", 1),
        ("$..", 2),
        ("$x", 1),
        ("$.a b", 3),
        ("  $.a b", 5),
        ("a b", 1),
        ("$[", 1),
        ("$['a", 2),
        ("$['a'", 4),
        ("$['a',]", 6),
        ("$['a' 'b']", 6),
        ("$[1:2", 1),
        ("$[a]", 1),
        ("$[1 2]", 2),
        ("$[::2]", 2),
        ("$[1:x]", 1),
        ("$[*x]", 3),
        ("$[?]", 1),
        ("$[?(@.a == 1]", 3),
        ("$[?(@.a == 1))", 13),
        ("$[?(@.a ==)]", 10),
        ("$[?(@.a == 'x)]", 3),
        ("$[?(@.a =~ /[/)]", 11),
        ("$[?(@.a =~ /(?<=x)y/)]", 11),
        ("$[?(@.a in ['a', 'b')]", 11),
        ("$[?(true)]", 4),
        ("$[?(@.a && )]", 11),
        ("$[?(@.a == tru)]", 11),
        ("$[?(@.a == nul)]", 11),
        ("$[?(@.a == 1.2.3)]", 11),
        ("$[?(@.a == 1 @.b)]", 13),
        ("$[?(@.a in['x'])]", 8),
        ("$[?(@.a.)]", 7),
        ("$.foo()", 2),
        ("$.first()", 2),
        ("$.length().a", 10),
        ("$..length()", 0),
        ("$.concat(", 8),
        ("$[?(@.x)][", 9),
        ("$.changes[(@.length-1)]", 9),
        ("$...a", 3),
        (deep.as_str(), 65),
        (nots.as_str(), 65),
    ]);
}

#[test]
fn huge_expression_is_rejected() {
    let long = format!("$.{}", "a".repeat(20_000));
    let e = Filter::compile(&long).unwrap_err();
    assert!(e.message.contains("longer"), "{e}");
}

// --- validate() -------------------------------------------------------------------

#[test]
fn validate_cases() {
    let page = doc(DOC_PAGE);
    let cases: Vec<(&str, Value, Validation)> = vec![
        (
            "$[?($.identity.name == \"john.doe\")]",
            page.clone(),
            v(true, true, true),
        ),
        (
            "$[?($.identity.name == \"jane\")]",
            page.clone(),
            v(false, true, true),
        ),
        (
            "$[?($.identity.nickname == \"jd\")]",
            page.clone(),
            v(false, true, false),
        ),
        (
            "$[?($.identity.name ==",
            page.clone(),
            v(false, false, false),
        ),
        (
            "$.changes[?(@.attribute == \"department\")]",
            page.clone(),
            v(true, true, true),
        ),
        (
            "$.changes[?(@.attribute == \"title\")]",
            page.clone(),
            v(false, true, true),
        ),
        (
            "$.changes[?(@.attribute == \"department\")]",
            json!({"changes": []}),
            v(false, true, false),
        ),
        (
            "$.changes[?(@.attribute == \"x\")]",
            json!({"changes": [{"attribute": "y"}]}),
            v(false, true, true),
        ),
        (
            "$.changes[?(@.title == \"x\")]",
            page.clone(),
            v(false, true, false),
        ),
        (
            "$.identity.attributes[?(!@.alternateEmail)]",
            page.clone(),
            v(false, true, false),
        ),
        (
            "$.identity.attributes[?(!@.alternateEmail)]",
            json!({"identity": {"attributes": {"email": "a"}}}),
            v(true, true, false),
        ),
        (
            "$[?($.warnings noneof ['x'])]",
            doc(AGG),
            v(true, true, true),
        ),
        ("$.changes[*].newValue", page.clone(), v(true, true, true)),
        ("$.nope[*]", page.clone(), v(false, true, false)),
        ("$..name", page.clone(), v(true, true, true)),
        ("$.changes.length()", page.clone(), v(true, true, true)),
        ("$", json!({}), v(true, true, true)),
    ];
    let mut failures = Vec::new();
    for (expr, input, expected) in cases {
        let got = validate(expr, &input);
        if got != expected {
            failures.push(format!(
                "`{expr}` on {input}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// --- Jayway 2.9.0 differential corpus ------------------------------------------
//
// tests/fixtures/jayway/corpus.jsonl: filter/payload pairs with the verdict Jayway
// JsonPath 2.9.0 itself gave (`Verdicts.java` on a 2.9.0 build, default
// configuration, json-smart provider, OpenJDK 17), recorded as data by
// `tests/fixtures/jayway/regenerate` from `generate.py`'s pairs: every row of the
// tables above, ISC's documented filters on every catalog example input, and
// grammar-generated filters. The relay must agree on every pair but those below.

/// Pairs where the relay knowingly differs from Jayway 2.9.0, as (payload ref,
/// filter, why). Kept exact: a listed pair that agrees again fails the test.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "corners",
        r"$[?(@.nl =~ /a$\n/)]",
        "Java's `$` also matches before a final line terminator; the regex crate cannot express it",
    ),
    (
        "corners",
        r"$[?(@.x =~ /(?=a)a+/)]",
        "look-around: refused at load (the regex crate has none)",
    ),
    (
        "corners",
        r"$[?(@.x =~ /(a)\1+/)]",
        "backreference: refused at load",
    ),
    (
        "corners",
        r"$[?(@.x =~ /a*+/)]",
        "possessive quantifier: refused at load",
    ),
    (
        "corners",
        r"$[?(@.x =~ /\Qaaa\E/)]",
        "\\Q..\\E quoting: refused at load",
    ),
    (
        "corners",
        r"$[?(@.alpha =~ /[[:alpha:]]+/)]",
        "POSIX bracket class: refused at load (Java reads it as a set of characters)",
    ),
    (
        "corners",
        r"$[?(@.x =~ /(?d)a+/)]",
        "inline (?d): refused at load (the /d flag after the pattern works)",
    ),
];

/// The relay's verdict in the corpus's words.
fn relay_verdict(filter: &str, payload: &Value) -> &'static str {
    match Filter::compile(filter) {
        Err(_) => "invalid",
        Ok(f) if f.matches(payload) => "match",
        Ok(_) => "no-match",
    }
}

/// Every payload of the corpus with all of its filters as one trigger's filter set (each filter twice, between
/// routes without a filter): each member's verdict is the filter's own, errors included (the set evaluator
/// against the per-filter oracle on 4,700 real pairs).
#[test]
fn jayway_corpus_as_filter_sets() {
    let payloads: std::collections::HashMap<String, String> =
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jayway/payloads.json"
        )))
        .unwrap();
    let mut by_payload: std::collections::BTreeMap<String, Vec<Filter>> = Default::default();
    for line in include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jayway/corpus.jsonl"
    ))
    .lines()
    {
        let p: Value = serde_json::from_str(line).unwrap();
        if let Ok(f) = Filter::compile(p["filter"].as_str().unwrap()) {
            by_payload
                .entry(p["payload_ref"].as_str().unwrap().to_string())
                .or_default()
                .push(f);
        }
    }
    let mut checked = 0;
    for (reference, filters) in &by_payload {
        let payload: Value = serde_json::from_str(&payloads[reference]).unwrap();
        let mut set = FilterSet::new();
        let mut members = Vec::new();
        for f in filters.iter().chain(filters.iter()) {
            set.push(Some(f));
            set.push(None);
            members.push(Some(f));
            members.push(None);
        }
        assert_eq!(
            set.distinct(),
            filters
                .iter()
                .map(|f| f.source())
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        // A budget no member can exhaust: each filter still stops at its own 2M steps, as alone.
        let verdicts = set.evaluate(
            &payload,
            &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()),
        );
        let direct = set
            .evaluate_body(
                payloads[reference].as_bytes(),
                &mut EventBudget::with_steps(u64::MAX / 4, set.distinct()),
            )
            .unwrap();
        for (i, m) in members.iter().enumerate() {
            match m {
                None => assert!(verdicts.get(i).is_none() && direct.get(i).is_none()),
                Some(f) => {
                    let alone = f.evaluate(&payload);
                    assert_eq!(
                        verdicts.get(i),
                        Some(&alone),
                        "`{}` on {reference}",
                        f.source()
                    );
                    assert_eq!(
                        direct.get(i),
                        Some(&alone),
                        "`{}` on {reference} (evaluate_body)",
                        f.source()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 8000, "only {checked} members checked");
}

#[test]
fn jayway_differential_corpus() {
    let payloads: std::collections::HashMap<String, String> =
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jayway/payloads.json"
        )))
        .expect("tests/fixtures/jayway/payloads.json is a map of JSON texts");
    let mut pairs = 0;
    let mut disagree = Vec::new();
    let mut known_seen = vec![false; KNOWN_DIFFERENCES.len()];
    for (n, line) in include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jayway/corpus.jsonl"
    ))
    .lines()
    .enumerate()
    {
        let p: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {n}: {e}"));
        let field = |k: &str| {
            p[k].as_str()
                .unwrap_or_else(|| panic!("corpus line {n} has no string {k:?}"))
        };
        let (id, filter, reference, jayway) = (
            field("id"),
            field("filter"),
            field("payload_ref"),
            field("jayway"),
        );
        let payload: Value = serde_json::from_str(&payloads[reference])
            .unwrap_or_else(|e| panic!("payload {reference}: {e}"));
        pairs += 1;
        let relay = relay_verdict(filter, &payload);
        if relay == jayway {
            continue;
        }
        match KNOWN_DIFFERENCES
            .iter()
            .position(|(r, f, _)| *r == reference && *f == filter)
        {
            Some(i) => known_seen[i] = true,
            None => disagree.push(format!(
                "{id} `{filter}` on {reference}: Jayway {jayway}{}, relay {relay}",
                p["jayway_error"]
                    .as_str()
                    .map(|e| format!(" ({})", e.chars().take(80).collect::<String>()))
                    .unwrap_or_default()
            )),
        }
    }
    assert!(
        pairs > 4000,
        "the corpus has only {pairs} pairs: regenerate it"
    );
    for (i, seen) in known_seen.iter().enumerate() {
        if !seen {
            disagree.push(format!(
                "listed as a known difference but agrees now (remove it): {:?}",
                KNOWN_DIFFERENCES[i]
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {pairs} pairs disagree with Jayway 2.9.0:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
