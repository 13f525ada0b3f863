//! The parts every console page shares: the frame, dates, the copy field
//! of a secret shown once, and messages. maud escapes every value it
//! inserts, so user text is never markup.

use maud::{html, Markup, DOCTYPE};

/// A link of the top navigation: (label, href, current?).
pub struct Nav<'a> {
    pub links: Vec<(&'a str, String, bool)>,
    /// Sign-out form: (action, CSRF token).
    pub sign_out: Option<(String, String)>,
    /// Who is signed in.
    pub who: Option<String>,
}

/// The frame of a page. `assets` is the path of the asset folder.
pub fn frame(title: &str, product: &str, assets: &str, nav: &Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (product) }
                link rel="stylesheet" href={ (assets) "/console.css" };
                script src={ (assets) "/console.js" } defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { (product) }
                    @if !nav.links.is_empty() {
                        nav aria-label="Main" {
                            ul {
                                @for (label, href, current) in &nav.links {
                                    li {
                                        @if *current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(who) = &nav.who {
                        span.who { "Signed in as " strong { (who) } }
                    }
                    @if let Some((action, csrf)) = &nav.sign_out {
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A message above a page's content.
pub fn notice(text: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text {
            p.notice role="status" { (t) }
        }
        @if let Some(e) = error {
            p.error role="alert" { (e) }
        }
    }
}

/// A UTC date and time from Unix seconds; "—" for none.
pub fn when(at: Option<i64>) -> String {
    let Some(at) = at else {
        return "—".into();
    };
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "—".into(),
    }
}

/// A value to copy: read-only field, copy button (the script enables it),
/// all labelled for screen readers.
pub fn copy_field(id: &str, label: &str, value: &str) -> Markup {
    html! {
        div.copy {
            label for=(id) { (label) }
            div.copyrow {
                input.secret type="text" id=(id) value=(value) readonly spellcheck="false" autocomplete="off";
                button.copybtn type="button" data-copy=(id) hidden { "Copy" }
            }
        }
    }
}

/// A multi-line value to copy (the curl example).
pub fn copy_block(id: &str, label: &str, value: &str) -> Markup {
    html! {
        div.copy {
            label for=(id) { (label) }
            textarea.code id=(id) readonly rows="4" spellcheck="false" { (value) }
            button.copybtn type="button" data-copy=(id) hidden { "Copy" }
        }
    }
}

/// The warning shown with every secret.
pub fn shown_once() -> Markup {
    html! {
        p.warning role="alert" {
            strong { "Copy it now." }
            " It will not be shown again: Tollgate keeps only a hash of it. If you lose it, create a new one."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_missing_ones_a_dash() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(when(Some(1_700_000_000)), "2023-11-14 22:13 UTC");
        assert_eq!(when(None), "—");
    }

    #[test]
    fn user_text_is_escaped() {
        let nav = Nav {
            links: vec![],
            sign_out: None,
            who: Some("<script>alert(1)</script>".into()),
        };
        let page = frame("t", "p", "/a", &nav, html! { p { ("\"><img src=x>") } }).into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<img src=x>"));
    }
}
