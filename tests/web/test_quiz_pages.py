"""随堂测 in real Chromium against a server the test starts (127.0.0.1 only): the teacher's page pushes a
question typed live, a receiving classroom's kiosk answers by clicking, the teacher sees the answer at
once, and so does a researcher patrolling the lesson; the kiosk reloaded mid-quiz shows its answer again; a question prepared before the lesson and a
multiple-choice one follow; after 下课 the lesson's record page shows the results."""

from __future__ import annotations

from typing import Any

from tests.web.test_lesson_pages import assert_no_emoji, start_lesson, wait_joined


def test_a_question_is_pushed_answered_reloaded_and_kept_in_the_record(web_server: Any, open_page: Any,
                                                                      js_poll: Any, screenshot: Any) -> None:
    w = web_server.world
    lid = web_server.lesson_id
    r = web_server.http.post(f"/api/v1/lessons/{lid}/quiz-questions", headers=web_server.headers(w.teacher),
                             json={"kind": "true_false", "text": "课前准备：7 是质数", "correct": [0]})
    assert r.status_code == 201, r.text
    r = web_server.http.post(f"/api/v1/lessons/{lid}/quiz-questions", headers=web_server.headers(w.teacher),
                             json={"kind": "single", "text": "备用题：不推送", "options": ["甲", "乙"], "correct": [0]})
    assert r.status_code == 201, r.text
    c = start_lesson(web_server, open_page, js_poll, classrooms=1)
    teacher, a = c["teacher"], c["a"]
    js_poll(teacher, "document.getElementById('quiz-prepared').textContent.includes('课前准备：7 是质数')")

    # typed live: a single-choice question with B right
    teacher.fill("#quiz-text", "3 + 4 = ?")
    teacher.fill("#quiz-options", "6\n7\n8")
    teacher.check("#quiz-correct input[value='1']")
    teacher.click("#quiz-push")
    js_poll(a, "!document.getElementById('quiz-answer').hidden")
    assert "3 + 4 = ?" in a.inner_text("#quiz-answer") and "请作答" in a.inner_text("#quiz-mine")
    js_poll(teacher, "document.getElementById('quiz-summary')?.textContent.includes('已作答 0')")

    a.click(".quiz-option[data-index='1']")
    js_poll(a, "document.getElementById('quiz-mine').textContent.includes('已作答：B')")
    room = w.recv_room.name
    js_poll(teacher, f"document.getElementById('quiz-results').textContent.includes('{room}')")
    assert teacher.inner_text(".quiz-count[data-option='1']") == "1 人"
    assert "正确率 100%" in teacher.inner_text("#quiz-summary")
    screenshot(teacher, "main-quiz-results")

    # the kiosk reloaded in the middle shows the open question and its answer again
    a.reload()
    wait_joined(a, js_poll)
    js_poll(a, "document.getElementById('quiz-mine')?.textContent.includes('已作答：B')", timeout=15)
    assert "3 + 4 = ?" in a.inner_text("#quiz-answer")
    screenshot(a, "receiving-quiz-after-reload")

    # a researcher patrolling the lesson (the full view) sees the results as the teacher does, live
    patrol = open_page(w.researcher_a, f"/patrol/#lesson={lid}")
    js_poll(patrol, "!document.getElementById('watch-quiz-card').hidden", timeout=15)
    js_poll(patrol, f"document.getElementById('watch-quiz').textContent.includes('{room}')")
    assert "3 + 4 = ?" in patrol.inner_text("#watch-quiz") and "作答中" in patrol.inner_text("#quiz-summary")
    assert patrol.inner_text("#watch-quiz .quiz-count[data-option='1']") == "1 人"
    assert not patrol.query_selector("#watch-quiz button")  # watching only: no 结束作答 there

    teacher.click("#quiz-close")
    js_poll(a, "document.getElementById('quiz-mine').textContent.includes('正确答案：B')")
    js_poll(teacher, "document.getElementById('quiz-summary').textContent.includes('已结束')")
    js_poll(patrol, "document.getElementById('quiz-summary').textContent.includes('已结束')")
    screenshot(patrol, "patrol-quiz-results")
    patrol.close()

    # a question prepared before the lesson, pushed from the list: the kiosk answers 正确
    teacher.click("#quiz-prepared li:has-text('课前准备：7 是质数') button")
    js_poll(a, "document.querySelector('#quiz-answer .quiz-question')?.textContent.includes('课前准备')")
    a.click(".quiz-option[data-index='0']")
    js_poll(teacher, "document.getElementById('quiz-summary').textContent.includes('已作答 1')")
    teacher.click("#quiz-close")
    js_poll(a, "document.getElementById('quiz-mine').textContent.includes('正确答案：A')")
    assert "课前准备" not in teacher.inner_text("#quiz-prepared")  # asked: off the list

    # a multiple-choice question: the kiosk picks two options and sends them with 提交答案
    teacher.select_option("#quiz-kind", "multiple")
    teacher.fill("#quiz-text", "哪些是偶数？")
    teacher.fill("#quiz-options", "2\n3\n4")
    teacher.check("#quiz-correct input[value='0']")
    teacher.check("#quiz-correct input[value='2']")
    teacher.click("#quiz-push")
    js_poll(a, "document.querySelector('#quiz-answer .quiz-question')?.textContent.includes('哪些是偶数')")
    a.click(".quiz-option[data-index='0']")
    a.click(".quiz-option[data-index='2']")
    a.click("#quiz-submit")
    js_poll(a, "document.getElementById('quiz-mine').textContent.includes('已作答：AC')")
    js_poll(teacher, "document.getElementById('quiz-summary').textContent.includes('正确率 100%')")
    teacher.click("#quiz-close")
    js_poll(teacher, "document.getElementById('quiz-summary').textContent.includes('已结束')")
    assert_no_emoji(a)
    assert_no_emoji(teacher)

    # 下课, then the lesson's record page has the results
    teacher.click("#btn-end")
    teacher.click("dialog .btn-danger")
    js_poll(teacher, "!document.getElementById('ended').hidden")
    record = open_page(w.teacher, f"/records/lesson.html?id={lid}")
    js_poll(record, "document.body.dataset.loaded === '1'", timeout=15)
    card = record.inner_text("#quiz-card")
    assert not record.eval_on_selector("#quiz-card", "n => n.hidden")
    assert "3 + 4 = ?" in card and room in card and "正确率 100.0%" in card
    assert "B. 7（正确答案） — 1 人" in card
    assert "第 2 题 判断题 课前准备：7 是质数" in card and "第 3 题 多选题 哪些是偶数？" in card
    assert "备用题" not in card  # never pushed: not in the record
    assert record.is_visible("#quiz-csv")
    record.locator("#quiz-card").scroll_into_view_if_needed()
    screenshot(record, "record-quiz")
