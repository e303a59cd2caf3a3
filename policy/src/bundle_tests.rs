use super::*;

fn src(name: &str, text: &str) -> PolicySource {
    PolicySource {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

fn problems(sources: &[PolicySource]) -> Vec<String> {
    PolicyBundle::from_sources(sources)
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

const GOOD: &str = r#"@id("frontend-reads-cart")
permit (
  principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
  action == Mesh::Action::"GET",
  resource == Mesh::Service::"cart"
) when { context.path like "/api/*" };
"#;

#[test]
fn example_policies_validate() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/policies");
    let bundle = PolicyBundle::load(&[dir]).unwrap();
    assert_eq!(bundle.len(), 7);
    let origin = bundle.origin("frontend-reads-cart-api").unwrap();
    assert!(origin.file.ends_with("shop.cedar"));
    assert_eq!(origin.line, 12);
}

#[test]
fn ids_come_from_annotations() {
    let bundle = PolicyBundle::from_sources(&[src("a.cedar", GOOD)]).unwrap();
    let ids: Vec<String> = bundle
        .policies()
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(ids, ["frontend-reads-cart"]);
    assert_eq!(bundle.origin("frontend-reads-cart").unwrap().line, 1);
    assert_eq!(bundle.version(), 0);
    assert_eq!(bundle.with_version(7).version(), 7);
}

#[test]
fn syntax_errors_are_located() {
    let text = "@id(\"x\")\npermit (principal, action, resource)\nwhen { context.path like };\n";
    let p = problems(&[src("bad.cedar", text)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("bad.cedar:3:"), "{p:?}");
}

#[test]
fn schema_violations_are_located() {
    let unknown_type = "@id(\"a\")\npermit (principal == Mesh::Robot::\"r2\", action, resource);\n";
    let p = problems(&[src("t.cedar", unknown_type)]);
    assert!(p[0].starts_with("t.cedar:2:"), "{p:?}");
    assert!(p[0].contains("Robot"), "{p:?}");

    let unknown_attr = "@id(\"b\")\npermit (principal, action == Mesh::Action::\"GET\", resource)\n  when { principal.shoe_size > 3 };\n";
    let p = problems(&[src("u.cedar", unknown_attr)]);
    assert!(p[0].starts_with("u.cedar:3:"), "{p:?}");
    assert!(p[0].contains("shoe_size"), "{p:?}");

    let unknown_action =
        "@id(\"c\")\npermit (principal, action == Mesh::Action::\"FETCH\", resource);\n";
    let p = problems(&[src("v.cedar", unknown_action)]);
    assert!(p[0].starts_with("v.cedar:2:"), "{p:?}");
    assert!(p[0].contains("FETCH"), "{p:?}");

    // Headers exist on HTTP actions only: reading them on `connect` is a type error.
    let wrong_context = "@id(\"d\")\npermit (principal, action == Mesh::Action::\"connect\", resource)\n  when { context.headers.hasTag(\"x\") };\n";
    let p = problems(&[src("w.cedar", wrong_context)]);
    assert!(p[0].starts_with("w.cedar:3:"), "{p:?}");
}

#[test]
fn ids_are_required_and_unique_across_files() {
    let second = "// the second policy\n\npermit (principal, action, resource);\n";
    let p = problems(&[src("a.cedar", GOOD), src("b.cedar", second)]);
    assert_eq!(
        p,
        ["b.cedar:3:1: policy has no `@id(\"…\")` annotation; every policy needs a unique id"]
    );

    let p = problems(&[src("a.cedar", GOOD), src("b.cedar", &format!("\n\n{GOOD}"))]);
    assert_eq!(
        p,
        ["b.cedar:3:1: duplicate policy id `frontend-reads-cart` (first at a.cedar:1:1)"]
    );

    let empty = "@id(\"\")\npermit (principal, action, resource);";
    assert_eq!(
        problems(&[src("e.cedar", empty)]),
        ["e.cedar:1:1: policy id is empty"]
    );
}

#[test]
fn every_problem_of_every_file_is_reported_and_nothing_is_half_built() {
    let p = problems(&[
        src("ok.cedar", GOOD),
        src("one.cedar", "permit (principal, action, resource"),
        src("two.cedar", "permit (principal, action, resource);"),
    ]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("one.cedar:"));
    assert!(p[1].starts_with("two.cedar:"));
}

#[test]
fn templates_and_oversized_files_are_refused() {
    let template = "@id(\"t\")\npermit (principal == ?principal, action, resource);";
    assert!(problems(&[src("t.cedar", template)])[0].contains("templates"));

    let big = format!("{GOOD}{}", " ".repeat(MAX_FILE_LEN));
    assert!(problems(&[src("big.cedar", &big)])[0].contains("limit is 1048576"));
}

#[test]
fn hash_follows_content_not_layout() {
    let two = format!(
        "{GOOD}\n@id(\"other\")\npermit (principal, action == Mesh::Action::\"connect\", resource);\n"
    );
    let (a, b) = two.split_at(GOOD.len());
    let one_file = PolicyBundle::from_sources(&[src("x.cedar", &two)]).unwrap();
    let two_files = PolicyBundle::from_sources(&[src("y.cedar", a), src("z.cedar", b)]).unwrap();
    assert_eq!(one_file.hash(), two_files.hash());
    assert_eq!(one_file.hash().len(), 64);

    let changed = GOOD.replace("/api/*", "/api/v2/*");
    let other = PolicyBundle::from_sources(&[src("x.cedar", &changed)]).unwrap();
    let first = PolicyBundle::from_sources(&[src("x.cedar", GOOD)]).unwrap();
    assert_ne!(other.hash(), first.hash());
}

#[test]
fn load_reports_unreadable_paths_and_empty_dirs() {
    let err = PolicyBundle::load(&[PathBuf::from("/nonexistent/p.cedar")]).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/p.cedar:1:1: "),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("signet-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = PolicyBundle::load(std::slice::from_ref(&dir)).unwrap_err();
    assert!(err.to_string().contains("no `.cedar` files"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
